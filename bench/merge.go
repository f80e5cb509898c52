package bench

import (
	"errors"
	"fmt"
)

// Merge joins benchmarks run in parts (on several nights, or after an
// interrupted one) into one: every run of every part, in the parts'
// order, a configuration's runs numbered on from one part to the next,
// and the rows summed up again. Parts that ran a configuration under one
// load with different disruptions measured different things and are
// refused, as is a part with no runs.
func Merge(parts ...*Results) (*Results, error) {
	if len(parts) < 2 {
		return nil, errors.New("merge needs at least two benchmarks")
	}
	out := &Results{Version: FormatVersion, Parts: len(parts)}
	type key struct{ config, load string }
	disruption := map[key]string{}
	runs := map[key]int{}
	for i, p := range parts {
		if len(p.Runs) == 0 {
			return nil, fmt.Errorf("part %d has no runs", i+1)
		}
		if out.Started.IsZero() || p.Started.Before(out.Started) {
			out.Started = p.Started
		}
		out.TookS += p.TookS
		out.Interrupted = out.Interrupted || p.Interrupted
		// A scenario run is one scenario.Record per load, all with its number:
		// renumber by (config, load, number) so a run's loads stay one run.
		renumber := map[key]map[int]int{}
		for _, run := range p.Runs {
			k := key{run.Config, run.Load}
			if d, ok := disruption[k]; ok && d != run.Disruption {
				return nil, fmt.Errorf("%s, %s: part %d disrupted it by %q, an earlier part by %q; those are different benchmarks", run.Config, run.Load, i+1, run.Disruption, d)
			}
			disruption[k] = run.Disruption
			if renumber[k] == nil {
				renumber[k] = map[int]int{}
			}
			n, ok := renumber[k][run.Run]
			if !ok {
				runs[k]++
				n = runs[k]
				renumber[k][run.Run] = n
			}
			run.Run = n
			out.Runs = append(out.Runs, run)
		}
	}
	out.Rows = Summarize(out.Runs)
	for _, row := range out.Rows {
		out.RunsPerConfig = max(out.RunsPerConfig, row.Runs)
	}
	return out, nil
}

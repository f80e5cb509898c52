package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/scenario"
)

// A benchmark run in two parts, merged, is the benchmark run at once:
// the same rows, each configuration's runs numbered on.
func TestMergeOfTwoParts(t *testing.T) {
	runs := recorded(t)
	start := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	part := func(started time.Time, took float64) *Results {
		return &Results{Version: FormatVersion, Started: started, TookS: took, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	}
	m, err := Merge(part(start.Add(24*time.Hour), 600), part(start, 500))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Started.Equal(start) || m.TookS != 1100 || m.Parts != 2 {
		t.Errorf("started %v, took %v s, parts %d; want the earliest start, 1100 s, 2 parts", m.Started, m.TookS, m.Parts)
	}
	if len(m.Runs) != 2*len(runs) {
		t.Fatalf("%d runs, want %d", len(m.Runs), 2*len(runs))
	}
	one := Summarize(runs)
	if len(m.Rows) != len(one) {
		t.Fatalf("%d rows, want %d", len(m.Rows), len(one))
	}
	for i, row := range m.Rows {
		o := one[i]
		if row.Config != o.Config || row.Load != o.Load || row.Runs != 2*o.Runs || row.Lost != 2*o.Lost || row.LosslessRuns != 2*o.LosslessRuns || row.AsExpected != 2*o.AsExpected {
			t.Errorf("row %s, %s: %d runs, %d lost, %d lossless, %d as expected; want twice %d, %d, %d, %d",
				row.Config, row.Load, row.Runs, row.Lost, row.LosslessRuns, row.AsExpected, o.Runs, o.Lost, o.LosslessRuns, o.AsExpected)
		}
	}
	// Numbered on: a row's runs are 1..n, each once per load.
	seen := map[[2]string][]int{}
	for _, run := range m.Runs {
		k := [2]string{run.Config, run.Load}
		seen[k] = append(seen[k], run.Run)
	}
	for k, ns := range seen {
		for i, n := range ns {
			if n != i+1 {
				t.Errorf("%s, %s: runs numbered %v, want 1..%d", k[0], k[1], ns, len(ns))
				break
			}
		}
	}
	var b bytes.Buffer
	if err := m.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := strings.Cut(b.String(), "\n"); h != "# nodrop bench: 6 configurations × loads, up to 6 runs each, merged from 2 benchmarks" {
		t.Errorf("header %q", h)
	}
	// The page says the same as the table: not every row has 6 runs.
	b.Reset()
	if err := m.WriteHTML(&b, "", nil); err != nil {
		t.Fatal(err)
	}
	if want := "6 configurations × loads, up to 6 runs each, merged from 2 benchmarks"; !strings.Contains(b.String(), want) {
		t.Errorf("index.html does not say %q", want)
	}
}

func TestMergeRefuses(t *testing.T) {
	runs := recorded(t)
	part := func(disruption string) *Results {
		r := &Results{Version: FormatVersion, RunsPerConfig: 1, Runs: append([]scenario.Record(nil), runs...)}
		for i := range r.Runs {
			r.Runs[i].Disruption = disruption
		}
		return r
	}
	for name, parts := range map[string][]*Results{
		"one part":            {part("rollout restart")},
		"an empty part":       {part("rollout restart"), {Version: FormatVersion}},
		"another disruption":  {part("rollout restart"), part("image change")},
		"another, third part": {part("rollout restart"), part("rollout restart"), part("scale down")},
	} {
		if _, err := Merge(parts...); err == nil {
			t.Errorf("%s: merged; want an error", name)
		}
	}
	if _, err := Merge(part("rollout restart"), part("rollout restart")); err != nil {
		t.Errorf("same disruption: %v", err)
	}
}

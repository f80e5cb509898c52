// Package bench compares configurations: each is run several times on one
// cluster, the runs are summed up per configuration and load, and the
// result is written as a table (results.md) and as JSON holding every run
// (results.json), which Diff compares with an earlier benchmark.
//
// Sending load and judging it stay with the scenario library; bench only
// repeats runs and counts what they found.
package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Entry is one configuration of a benchmark.
type Entry struct {
	// Config names it: a catalogue variant, a hot-upgrade case, the
	// Deployment of a user's manifest.
	Config string
	// Scenario is run once per run; each of its loads is a row.
	Scenario scenario.Scenario
	// Generators, when set, send this entry's load whatever the
	// benchmark's env says (a load that must come from the cluster).
	Generators scenario.Sender
}

func (e Entry) loads() string {
	var names []string
	for _, t := range e.Scenario.Traffic {
		names = append(names, t.Load.Name)
	}
	return strings.Join(names, " + ")
}

// Plan is what a benchmark runs: every entry, Runs times.
type Plan struct {
	Entries []Entry
	Runs    int
	// Attempts bounds how often a run that ends not judged is run again
	// (scenario.RunUntilJudged); 0 is scenario.DefaultAttempts, 1 never.
	Attempts int
}

// Step is where a benchmark is, told before each run.
type Step struct {
	// Index counts runs over the whole plan, from 1, of Total.
	Index, Total int
	Config       string
	// Load names the entry's loads.
	Load string
	// Run counts the entry's runs, from 1, of Runs.
	Run, Runs int
	Elapsed   time.Duration
	// ETA is the time left at the pace so far; 0 before the first run
	// ended.
	ETA time.Duration
}

func (s Step) String() string {
	eta := "ETA after the first run"
	if s.ETA > 0 {
		eta = "about " + s.ETA.Round(time.Second).String() + " left"
	}
	return fmt.Sprintf("[%d/%d] %s, %s, run %d of %d (elapsed %s, %s)", s.Index, s.Total, s.Config, s.Load, s.Run, s.Runs, s.Elapsed.Round(time.Second), eta)
}

// Run runs the plan entry by entry, run by run, each run in a fresh
// namespace of env's cluster. A run that fails is kept with its error and
// the benchmark goes on; it stops early only when ctx is done (the
// results then say Interrupted). progress, when set, is told before each
// run.
func Run(ctx context.Context, env scenario.Env, p Plan, progress func(Step)) *Results {
	res := &Results{Version: FormatVersion, Started: time.Now(), RunsPerConfig: p.Runs}
	total := len(p.Entries) * p.Runs
	done := 0
	for _, e := range p.Entries {
		for run := 1; run <= p.Runs; run++ {
			if ctx.Err() != nil {
				res.Interrupted = true
				res.finish()
				return res
			}
			elapsed := time.Since(res.Started)
			if progress != nil {
				step := Step{Index: done + 1, Total: total, Config: e.Config, Load: e.loads(), Run: run, Runs: p.Runs, Elapsed: elapsed}
				if done > 0 {
					step.ETA = elapsed / time.Duration(done) * time.Duration(total-done)
				}
				progress(step)
			}
			attempts := p.Attempts
			if attempts == 0 {
				attempts = scenario.DefaultAttempts
			}
			envE := env
			if e.Generators != nil {
				envE.Generators = e.Generators
			}
			r, err := e.Scenario.RunUntilJudged(ctx, envE, attempts)
			res.Runs = append(res.Runs, FromResult(e.Config, run, r, err)...)
			done++
		}
	}
	res.Interrupted = ctx.Err() != nil
	res.finish()
	return res
}

func (r *Results) finish() {
	r.TookS = time.Since(r.Started).Seconds()
	r.Rows = Summarize(r.Runs)
}

// FromResult turns a scenario run into its records (scenario.Records),
// named as the benchmark names the configuration and numbered as its
// run. err is what Run returned with it.
func FromResult(config string, run int, res *scenario.Result, err error) []scenario.Record {
	recs := scenario.Records(res, err)
	for i := range recs {
		recs[i].Config, recs[i].Run = config, run
	}
	return recs
}

// NotJudged reports whether any run of the benchmark ended without a
// verdict.
func (r *Results) NotJudged() bool {
	for _, run := range r.Runs {
		if run.Verdict == loadgen.NotJudged {
			return true
		}
	}
	return r.Interrupted
}

// Unexpected lists the runs that were judged and did not show what was
// expected of them.
func (r *Results) Unexpected() []scenario.Record {
	var out []scenario.Record
	for _, run := range r.Runs {
		if run.Verdict != loadgen.NotJudged && !run.AsExpected {
			out = append(out, run)
		}
	}
	return out
}

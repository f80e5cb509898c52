package scenario

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// Record is one load of one run: the one record every output is made
// from (the suites' summary, check's text, JSON and JUnit, bench's
// results and page). Records holds the one rule for its verdict.
type Record struct {
	// Config names the configuration: the scenario's name, or bench's
	// name for it.
	Config string `json:"config"`
	// Run numbers the run among a benchmark's runs of the same
	// configuration and load (from 1; 0 outside a benchmark).
	Run        int      `json:"run"`
	Disruption string   `json:"disruption"`
	Load       string   `json:"load"`
	Namespace  string   `json:"namespace"`
	URL        string   `json:"url,omitempty"`
	Added      []string `json:"added,omitempty"`
	// Expected is the claim's verdict; Verdict is NotJudged when the run
	// failed before a verdict (Error) or its load was not delivered.
	Expected   loadgen.Verdict `json:"expected"`
	Verdict    loadgen.Verdict `json:"verdict"`
	AsExpected bool            `json:"as_expected"`
	// Problems are why it was not as expected (wrong classes, losses at
	// the wrong moment, not judged).
	Problems []string `json:"problems,omitempty"`
	// Spared are its losses of classes the claim lacks that the run's
	// own evidence explained (Outcome.Spared).
	Spared []string `json:"spared,omitempty"`
	// NotJudgedBefore says why earlier attempts of this run were not
	// judged (RunUntilJudged).
	NotJudgedBefore []string `json:"not_judged_before,omitempty"`
	Error           string   `json:"error,omitempty"`
	// Advice is what happened and what to change, when requests were
	// lost (Advise).
	Advice      []string        `json:"advice,omitempty"`
	TookS       float64         `json:"took_s"`
	Outcome     Outcome         `json:"outcome"`
	Report      *loadgen.Report `json:"report,omitempty"`
	Calibration *loadgen.Report `json:"calibration,omitempty"`
	Window      Window          `json:"window"`
	Events      []probes.Event  `json:"events,omitempty"`
	// Expect is the claim it was judged against.
	Expect Expectation `json:"-"`
	// badInput: the run refused its input before anything was judged.
	badInput bool
}

// Records are a run's loads as records, under the one verdict rule: a run
// that returned an error, or a load without a report, is not judged; a
// judged load is as expected when it showed what it claims. A run with
// no load at all (it failed before one started) is one record, not
// judged.
func Records(res *Result, err error) []Record {
	if res == nil || len(res.Traffic) == 0 {
		r := Record{Load: "—", Verdict: loadgen.NotJudged, Error: errString(err), badInput: errors.Is(err, ErrBadInput)}
		if res != nil {
			r.Config, r.Disruption, r.Namespace = res.Scenario, res.Disruption, res.Namespace
			r.NotJudgedBefore = res.EarlierAttempts
		}
		if r.Error == "" {
			r.Error = "the run had no load"
		}
		return []Record{r}
	}
	var out []Record
	for _, t := range res.Traffic {
		r := Record{
			Config: res.Scenario, Disruption: res.Disruption, Load: t.Name, Namespace: res.Namespace, URL: t.URL, Added: res.Added,
			Expected: t.Outcome.Expected, Verdict: t.Outcome.Got, AsExpected: err == nil && t.Report != nil && t.Outcome.Passed(),
			Problems: t.Outcome.Problems, Spared: t.Outcome.Spared, NotJudgedBefore: res.EarlierAttempts, Error: errString(err),
			TookS: res.Took.Seconds(), Outcome: t.Outcome, Report: t.Report, Calibration: t.Calibration, Window: res.Window, Events: res.Events,
			Expect: t.Expect, badInput: errors.Is(err, ErrBadInput),
		}
		if r.Expected == "" { // not judged: the claim as written
			r.Expected = t.Expect.Verdict
		}
		if err != nil || t.Report == nil {
			r.Verdict = loadgen.NotJudged
		}
		if r.Verdict == loadgen.NotJudged && r.Error == "" && len(r.Problems) == 0 && t.Report != nil {
			r.Problems = t.Report.NotJudged
		}
		if t.Report != nil && t.Report.Lost > 0 {
			r.Advice = Advise(t.Report, res.Events)
		}
		out = append(out, r)
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Judged reports whether the record reached a verdict: a report, and no
// error cut the run short.
func (r Record) Judged() bool { return r.Report != nil && r.Error == "" }

// NotJudgedBecause says why a record has no verdict: the load's own
// reasons (not delivered, interrupted), else the judge's, else its
// problems or error.
func (r Record) NotJudgedBecause() []string {
	switch {
	case r.Report != nil && len(r.Report.NotJudged) > 0:
		return r.Report.NotJudged
	case len(r.Outcome.NotJudged) > 0:
		return r.Outcome.NotJudged
	case len(r.Problems) > 0:
		return r.Problems
	case r.Error != "":
		return []string{r.Error}
	}
	return nil
}

// Row is the record as a line of a summary table; one not judged says why
// on its first line.
func (r Record) Row() Row {
	if !r.Judged() {
		return Row{Config: r.Config, Disruption: r.Disruption, Load: r.Load, Got: loadgen.NotJudged, Problem: r.Why(),
			EarlierAttempts: r.NotJudgedBefore}
	}
	row := NewRow(r.Config, r.Disruption, r.Load, r.Report, r.Outcome, r.TookS)
	row.EarlierAttempts = r.NotJudgedBefore
	return row
}

// Why says in one line why the run was not as expected: its error's
// first line, or its problems.
func (r Record) Why() string {
	if r.Error != "" {
		first, _, _ := strings.Cut(r.Error, "\n")
		return first
	}
	return strings.Join(r.Problems, "; ")
}

// WriteText writes the record for a person to read: the attempts run
// again, the verdict in one line, the claim's mechanism when the run did
// not show it, the report, what happened and what to change, the losses
// next to what Kubernetes did, and the timeline.
func (r Record) WriteText(w io.Writer) {
	if r.badInput {
		fmt.Fprintf(w, "BAD INPUT, nothing judged: %s\n", r.Error)
		return
	}
	for i, why := range r.NotJudgedBefore {
		fmt.Fprintf(w, "attempt %d was not judged and was run again: %s\n", i+1, why)
	}
	rep := r.Report
	switch {
	case r.Error != "":
		fmt.Fprintf(w, "NOT JUDGED: %s\n", r.Error)
		if rep == nil {
			return
		}
	case rep == nil:
		fmt.Fprintf(w, "NOT JUDGED: %s\n", strings.Join(r.Problems, "; "))
		return
	case r.Outcome.Got == loadgen.Lossless && r.Outcome.Passed():
		fmt.Fprintf(w, "LOSSLESS: %d requests through the %s (settled in %.1fs), 0 lost\n", rep.Total, r.Disruption, r.TookS)
	case r.Outcome.Got == loadgen.Lossy:
		fmt.Fprintf(w, "LOSSY: %d of %d requests lost through the %s (%s)\n", rep.Lost, rep.Total, r.Disruption, rep.LostClasses())
	default:
		fmt.Fprintf(w, "NOT JUDGED: %s\n", strings.Join(append(rep.NotJudged, r.Outcome.Problems...), "; "))
	}
	if !r.AsExpected && r.Error == "" {
		r.writeClaim(w)
	}
	_ = rep.WriteTable(w)
	if rep.Lost > 0 {
		fmt.Fprintf(w, "\nWhat happened, and what to change:\n")
		for _, a := range r.Advice {
			fmt.Fprintf(w, "  - %s\n", a)
		}
		fmt.Fprintf(w, "\nLosses next to what Kubernetes did:\n%s", indent(probes.Explain(rep, r.Events)))
	}
	fmt.Fprintf(w, "\nTimeline (seconds from the start of load):\n%s", indent(probes.Timeline(rep, r.Events)))
}

// writeClaim is the claim the run did not show: its mechanism and the
// loss classes it produces.
func (r Record) writeClaim(w io.Writer) {
	if r.Expect.Why != "" {
		fmt.Fprintf(w, "claimed: %s\n", r.Expect.Why)
	}
	if len(r.Expect.Classes) > 0 {
		fmt.Fprintf(w, "classes of the mechanism:\n%s", r.Expect.Reasons())
	}
}

func indent(s string) string {
	if s == "" {
		return "  (none)\n"
	}
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

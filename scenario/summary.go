package scenario

import (
	"fmt"
	"io"
	"strings"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// Row is one line of a summary table: one judged run, or a spec that
// never reached its verdict.
type Row struct {
	Config     string                `json:"config"`
	Disruption string                `json:"disruption"`
	Load       string                `json:"load"`
	Total      int                   `json:"total"`
	Lost       int                   `json:"lost"`
	ByClass    map[loadgen.Class]int `json:"lost_by_class"`
	OutageSec  float64               `json:"longest_outage_s"`
	TookSec    float64               `json:"took_s"`
	Expected   loadgen.Verdict       `json:"expected"`
	Got        loadgen.Verdict       `json:"got"`
	// Passed is the spec's own state, not a comparison of verdicts: a
	// spec that failed any check fails its row.
	Passed bool `json:"passed"`
	// Problem is why it failed, on one line.
	Problem string `json:"problem,omitempty"`
	// Client is the client's settings (loadgen.Client.String).
	Client string `json:"client,omitempty"`
	// EarlierAttempts say why runs before the judged one were not judged.
	EarlierAttempts []string `json:"not_judged_before,omitempty"`
	// Coverage is the share of the judged window in which the load went
	// out (loadgen.Delivery.Coverage); Spared says which stalls and gaps
	// were counted but voided nothing ("" when none).
	Coverage float64 `json:"load_coverage"`
	Spared   string  `json:"spared,omitempty"`
}

// NewRow fills a row from a judged run.
func NewRow(config, disruption, load string, r *loadgen.Report, o Outcome, took float64) Row {
	row := Row{Config: config, Disruption: disruption, Load: load, Total: r.Total, Lost: r.Lost, ByClass: r.LostByClass,
		TookSec: took, Expected: o.Expected, Got: o.Got, Passed: o.Passed(), Client: r.Client.String()}
	if r.LongestOutage != nil {
		row.OutageSec = r.LongestOutage.Duration().Seconds()
	}
	row.Problem = strings.Join(o.Problems, "; ")
	row.Coverage, row.Spared = o.Delivery.Coverage, o.Delivery.Spared()
	return row
}

// WriteSummary writes rows as a Markdown table, with the client settings
// the verdicts hold for above it. A summary with no row says so: an empty
// table must never pass for a green one.
func WriteSummary(w io.Writer, rows []Row) error {
	var sb strings.Builder
	failed := 0
	for _, r := range rows {
		if !r.Passed {
			failed++
		}
	}
	fmt.Fprintf(&sb, "%d runs, %d passed, %d failed\n\n", len(rows), len(rows)-failed, failed)
	if len(rows) == 0 {
		sb.WriteString("No spec recorded a run of a configuration: nothing was judged here (the specs that ran judge none, or the cluster or every set-up failed).\n")
		_, err := io.WriteString(w, sb.String())
		return err
	}
	clients := map[string]bool{}
	sb.WriteString("Verdicts hold for nodrop's client as it was set:\n")
	for _, r := range rows {
		if r.Client != "" && !clients[r.Client] {
			clients[r.Client] = true
			fmt.Fprintf(&sb, "- %s\n", r.Client)
		}
	}
	sb.WriteString("\n| configuration | disruption | load | requests | lost | lost by class | longest outage | took | expected | got | |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		mark := "✓"
		if !r.Passed {
			mark = "✗ " + strings.ReplaceAll(r.Problem, "|", "/")
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %d | %d | %s | %.2fs | %.1fs | %s | %s | %s |\n",
			r.Config, r.Disruption, r.Load, r.Total, r.Lost, r.classes(), r.OutageSec, r.TookSec, orDash(string(r.Expected)), orDash(string(r.Got)), mark)
	}
	// Runs that were run again because the first was not judged: the
	// verdict above is the second run's, and the reason is not hidden.
	again := false
	for _, r := range rows {
		if len(r.EarlierAttempts) == 0 {
			continue
		}
		if !again {
			sb.WriteString("\nRun again because an earlier run was not judged (the row is the later run's):\n")
			again = true
		}
		fmt.Fprintf(&sb, "- %s, %s, %s: %s\n", r.Config, r.Disruption, r.Load, strings.Join(r.EarlierAttempts, " | "))
	}
	// Runs judged although the generator, or the machine, stood still at
	// moments the verdict does not rest on: said, with the coverage.
	spared := false
	for _, r := range rows {
		if r.Spared == "" {
			continue
		}
		if !spared {
			sb.WriteString("\nJudged with stalls or gaps that voided nothing (docs/stalls.md):\n")
			spared = true
		}
		fmt.Fprintf(&sb, "- %s, %s, %s: %s\n", r.Config, r.Disruption, r.Load, r.Spared)
	}
	// The failures again, whole, below the table: a log cut to its tail
	// (a CI summary) still says why.
	if failed > 0 {
		sb.WriteString("\nFailed:\n")
		for _, r := range rows {
			if !r.Passed {
				fmt.Fprintf(&sb, "- %s, %s, %s: %s\n", r.Config, r.Disruption, r.Load, orDash(r.Problem))
			}
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// String is the row on one line, as a run prints it when it ends:
// "baseline-good, rollout restart, fresh: 20250 requests, 0 lost;
// expected lossless, got lossless ✓".
func (r Row) String() string {
	lost := fmt.Sprintf("%d lost", r.Lost)
	if c := r.classes(); c != "" {
		lost += " (" + c + ")"
	}
	mark := "✓"
	if !r.Passed {
		mark = "✗ " + orDash(r.Problem)
	}
	return fmt.Sprintf("%s, %s, %s: %d requests, %s; expected %s, got %s %s",
		r.Config, r.Disruption, r.Load, r.Total, lost, orDash(string(r.Expected)), orDash(string(r.Got)), mark)
}

// classes are the row's losses by class, in loadgen's order.
func (r Row) classes() string { return loadgen.ClassCounts(r.ByClass) }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

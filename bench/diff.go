package bench

import (
	"fmt"
	"io"
	"strings"
)

// Change is how one configuration and load compares between two
// benchmarks.
type Change struct {
	Config string `json:"config"`
	Load   string `json:"load"`
	// Kind is Better, Worse, Same, New, Gone or Incomparable.
	Kind string `json:"change"`
	Was  string `json:"was"`
	Now  string `json:"now"`
	Why  string `json:"why"`
}

// Kinds of Change.
const (
	Better       = "better"
	Worse        = "worse"
	Same         = "same"
	New          = "new"
	Gone         = "gone"
	Incomparable = "not comparable"
)

// lossFactor is how much the loss rate of a configuration that loses in
// every run must move, either way, to count as a change: runs of one
// configuration differ by about that much (the catalogue's negative
// controls lose 8–13 requests per run).
const lossFactor = 1.5

// Diff compares a new benchmark with an old one, row by row: fewer
// lossless runs is worse, more is better; between configurations that
// lose in every run, a loss rate lossFactor times higher is worse, and
// one that many times lower better.
func Diff(old, new *Results) []Change {
	was := map[[2]string]Row{}
	for _, r := range old.Rows {
		was[[2]string{r.Config, r.Load}] = r
	}
	var out []Change
	seen := map[[2]string]bool{}
	for _, n := range new.Rows {
		key := [2]string{n.Config, n.Load}
		seen[key] = true
		o, ok := was[key]
		c := Change{Config: n.Config, Load: n.Load, Now: brief(n)}
		if !ok {
			c.Kind, c.Was, c.Why = New, "—", "not in the old benchmark"
			out = append(out, c)
			continue
		}
		c.Was = brief(o)
		c.Kind, c.Why = compare(o, n)
		out = append(out, c)
	}
	for _, o := range old.Rows {
		if key := [2]string{o.Config, o.Load}; !seen[key] {
			out = append(out, Change{Config: o.Config, Load: o.Load, Kind: Gone, Was: brief(o), Now: "—", Why: "not in the new benchmark"})
		}
	}
	return out
}

func compare(o, n Row) (kind, why string) {
	if o.Judged == 0 || n.Judged == 0 {
		return Incomparable, "no judged run on one side"
	}
	ro, rn := float64(o.LosslessRuns)/float64(o.Judged), float64(n.LosslessRuns)/float64(n.Judged)
	switch {
	case rn < ro:
		return Worse, fmt.Sprintf("lossless in %d of %d runs, was %d of %d", n.LosslessRuns, n.Judged, o.LosslessRuns, o.Judged)
	case rn > ro:
		return Better, fmt.Sprintf("lossless in %d of %d runs, was %d of %d", n.LosslessRuns, n.Judged, o.LosslessRuns, o.Judged)
	case n.LosslessRuns == n.Judged:
		return Same, "lossless in every run"
	}
	switch {
	case n.LossPct > o.LossPct*lossFactor:
		return Worse, fmt.Sprintf("loses %s%% of requests, was %s%%", pct(n.LossPct), pct(o.LossPct))
	case n.LossPct*lossFactor < o.LossPct:
		return Better, fmt.Sprintf("loses %s%% of requests, was %s%%", pct(n.LossPct), pct(o.LossPct))
	}
	return Same, fmt.Sprintf("loses %s%% of requests, was %s%% (within ×%.1f)", pct(n.LossPct), pct(o.LossPct), lossFactor)
}

// brief is a row in a few words: lossless runs and loss rate.
func brief(r Row) string {
	if r.Judged == 0 {
		return fmt.Sprintf("0 of %d runs judged", r.Runs)
	}
	return fmt.Sprintf("%d/%d lossless, %s%% lost", r.LosslessRuns, r.Judged, pct(r.LossPct))
}

// WriteDiff writes the changes as a table, the worse ones first.
func WriteDiff(w io.Writer, changes []Change) error {
	var sb strings.Builder
	sb.WriteString("| configuration | load | was | now | change | why |\n|---|---|---|---|---|---|\n")
	for _, kind := range []string{Worse, Better, Incomparable, New, Gone, Same} {
		for _, c := range changes {
			if c.Kind == kind {
				fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", c.Config, c.Load, c.Was, c.Now, c.Kind, c.Why)
			}
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// Worsened reports whether any change is for the worse.
func Worsened(changes []Change) bool {
	for _, c := range changes {
		if c.Kind == Worse {
			return true
		}
	}
	return false
}

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

// FormatVersion is the version of results.json's layout.
const FormatVersion = 1

// Results is a whole benchmark: every run, and a row per configuration
// and load.
type Results struct {
	Version       int       `json:"version"`
	Started       time.Time `json:"started"`
	TookS         float64   `json:"took_s"`
	RunsPerConfig int       `json:"runs_per_config"`
	// Interrupted: the benchmark was stopped before it ran everything.
	Interrupted bool `json:"interrupted,omitempty"`
	// Parts: how many benchmarks Merge joined into this one (0: it ran
	// as one).
	Parts int               `json:"parts,omitempty"`
	Rows  []Row             `json:"rows"`
	Runs  []scenario.Record `json:"runs"`
}

// Row sums up the runs of one configuration under one load.
type Row struct {
	Config     string `json:"config"`
	Load       string `json:"load"`
	Disruption string `json:"disruption"`
	Runs       int    `json:"runs"`
	// Judged runs reached a verdict; the figures below are over them.
	Judged      int                   `json:"judged"`
	Requests    int                   `json:"requests"`
	Lost        int                   `json:"lost"`
	LostByClass map[loadgen.Class]int `json:"lost_by_class"`
	LossPct     float64               `json:"loss_pct"`
	// LongestOutage is the longest run of consecutive losses of any run:
	// how long it lasted and how many requests it took.
	LongestOutageMs       float64 `json:"longest_outage_ms"`
	LongestOutageRequests int     `json:"longest_outage_requests"`
	// TookS is the median time the disruption took to settle.
	TookS float64 `json:"took_s"`
	// Latency before the disruption (calibration) and during the run
	// that holds it, medians over the runs, in milliseconds.
	Before LatencyPair `json:"latency_before"`
	During LatencyPair `json:"latency_during"`
	// NewConnsPerRun is how many connections the client opened per run:
	// how much the configuration made it reconnect.
	NewConnsPerRun float64 `json:"new_connections_per_run"`
	// LosslessRuns of Judged lost nothing.
	LosslessRuns int             `json:"lossless_runs"`
	Expected     loadgen.Verdict `json:"expected"`
	// AsExpected runs showed what was expected: the verdict, and for a
	// lossy claim its classes and moment.
	AsExpected int `json:"as_expected_runs"`
	// Verdicts of each run, in order.
	Verdicts []loadgen.Verdict `json:"verdicts"`
}

// LatencyPair is a median and a tail, in milliseconds.
type LatencyPair struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// Flaps reports whether the judged runs disagreed on the verdict.
func (r Row) Flaps() bool {
	first := loadgen.Verdict("")
	for _, v := range r.Verdicts {
		if v == loadgen.NotJudged {
			continue
		}
		if first == "" {
			first = v
		} else if v != first {
			return true
		}
	}
	return false
}

// Summarize sums runs up into rows, one per configuration and load, in the
// order they first ran.
func Summarize(runs []scenario.Record) []Row {
	// samples are a row's per-run figures, of which it keeps medians.
	type samples struct{ took, b50, b99, d50, d99, conns []float64 }
	var rows []Row
	var per []samples
	index := map[[2]string]int{}
	for _, run := range runs {
		key := [2]string{run.Config, run.Load}
		i, ok := index[key]
		if !ok {
			i = len(rows)
			index[key] = i
			rows = append(rows, Row{Config: run.Config, Load: run.Load, Disruption: run.Disruption, Expected: run.Expected, LostByClass: map[loadgen.Class]int{}})
			per = append(per, samples{})
		}
		row, s := &rows[i], &per[i]
		row.Runs++
		row.Verdicts = append(row.Verdicts, run.Verdict)
		if run.AsExpected {
			row.AsExpected++
		}
		if run.Verdict == loadgen.NotJudged || run.Report == nil {
			continue
		}
		r := run.Report
		row.Judged++
		row.Requests += r.Total
		row.Lost += r.Lost
		for c, n := range r.LostByClass {
			if n > 0 {
				row.LostByClass[c] += n
			}
		}
		if r.Lost == 0 {
			row.LosslessRuns++
		}
		if o := r.LongestOutage; o != nil && o.Requests > row.LongestOutageRequests {
			row.LongestOutageMs, row.LongestOutageRequests = float64(o.Duration().Microseconds())/1000, o.Requests
		}
		s.took = append(s.took, run.TookS)
		s.d50, s.d99 = append(s.d50, r.Latency.P50), append(s.d99, r.Latency.P99)
		if c := run.Calibration; c != nil {
			s.b50, s.b99 = append(s.b50, c.Latency.P50), append(s.b99, c.Latency.P99)
		}
		s.conns = append(s.conns, float64(r.NewConnections))
	}
	for i := range rows {
		row, s := &rows[i], per[i]
		if row.Requests > 0 {
			row.LossPct = 100 * float64(row.Lost) / float64(row.Requests)
		}
		row.TookS = median(s.took)
		row.Before = LatencyPair{P50: median(s.b50), P99: median(s.b99)}
		row.During = LatencyPair{P50: median(s.d50), P99: median(s.d99)}
		row.NewConnsPerRun = mean(s.conns)
	}
	return rows
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// WriteMarkdown writes the table, then the configurations whose runs
// disagreed and the runs that did not show what was expected.
func (r *Results) WriteMarkdown(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# nodrop bench: %d configurations × loads, %s\n\n", len(r.Rows), r.runsEach())
	if r.Interrupted {
		sb.WriteString("**Interrupted: not every run ran.**\n\n")
	}
	sb.WriteString("| configuration | load | runs | requests | lost | lost by class | loss % | longest outage | settled in | latency before p50 / p99 | during p50 / p99 | new conns per run | lossless runs | expected | as expected |\n")
	sb.WriteString("|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, row := range r.Rows {
		expected := string(row.Expected)
		if expected == "" {
			expected = "—"
		}
		fmt.Fprintf(&sb, "| %s | %s | %d | %d | %d | %s | %s | %s | %.1fs | %s | %s | %.0f | %d/%d | %s | %d/%d%s |\n",
			row.Config, row.Load, row.Runs, row.Requests, row.Lost, classes(row.LostByClass), pct(row.LossPct),
			outage(row), row.TookS, row.Before, row.During, row.NewConnsPerRun,
			row.LosslessRuns, row.Judged, expected, row.AsExpected, row.Runs, notJudgedNote(row))
	}
	var flaps []Row
	for _, row := range r.Rows {
		if row.Flaps() {
			flaps = append(flaps, row)
		}
	}
	sb.WriteString("\n## Repeatability\n\n")
	switch {
	case len(flaps) == 0 && len(r.Rows) > 0:
		fmt.Fprintf(&sb, "Every configuration gave the same verdict in each of its judged runs (%d of %d rows).\n", len(r.Rows), len(r.Rows))
	case len(flaps) > 0:
		fmt.Fprintf(&sb, "%d of %d rows flapped: their runs disagreed on the verdict.\n\n", len(flaps), len(r.Rows))
		for _, row := range flaps {
			fmt.Fprintf(&sb, "- %s\n", r.flapLine(row))
		}
	}
	r.listRuns(&sb, "Run again because a first attempt was not judged (the run counted is the later one):",
		func(run scenario.Record) []string { return run.NotJudgedBefore }, " | ")
	r.listRuns(&sb, "Losses of classes a claim lacks that the run's own evidence explained (a reconnect that followed its client port's reset connection back to the old pod, or one a node sent to a pod already being deleted), so not held against the claim:",
		func(run scenario.Record) []string { return run.Spared }, "; ")
	if bad := r.Unexpected(); len(bad) > 0 || r.NotJudged() {
		sb.WriteString("\n## Runs that did not show what was expected\n\n")
		for _, run := range r.Runs {
			if run.AsExpected {
				continue
			}
			fmt.Fprintf(&sb, "- %s, %s, run %d: %s: %s\n", run.Config, run.Load, run.Run, run.Verdict, run.Why())
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// listRuns writes, under heading, a line for each run that what gives
// anything for, its items joined by sep; nothing when no run has any.
func (r *Results) listRuns(sb *strings.Builder, heading string, what func(scenario.Record) []string, sep string) {
	started := false
	for _, run := range r.Runs {
		items := what(run)
		if len(items) == 0 {
			continue
		}
		if !started {
			fmt.Fprintf(sb, "\n%s\n\n", heading)
			started = true
		}
		fmt.Fprintf(sb, "- %s, %s, run %d: %s\n", run.Config, run.Load, run.Run, strings.Join(items, sep))
	}
}

// runsEach says how many runs each row has: "3 runs each", or "up to 5
// runs each" when rows differ (a merge of parts, an interrupted run), and
// how many benchmarks were merged.
func (r *Results) runsEach() string {
	each := fmt.Sprintf("%d runs each", r.RunsPerConfig)
	for _, row := range r.Rows {
		if row.Runs != r.RunsPerConfig {
			each = fmt.Sprintf("up to %d runs each", r.RunsPerConfig)
		}
	}
	if r.Parts > 1 {
		each += fmt.Sprintf(", merged from %d benchmarks", r.Parts)
	}
	return each
}

// flapLine names a row whose runs disagreed: each run's verdict and
// losses, whether every run stayed within the claim, and the mechanism
// where the runs' own evidence names it (losses that were all idle-close
// races). results.md and index.html both print it.
func (r *Results) flapLine(row Row) string {
	var parts []string
	lost, races := 0, 0
	for _, run := range r.Runs {
		if run.Config != row.Config || run.Load != row.Load {
			continue
		}
		s := fmt.Sprintf("run %d %s", run.Run, run.Verdict)
		if rep := run.Report; rep != nil && rep.Lost > 0 {
			lost, races = lost+rep.Lost, races+rep.IdleCloseRace
			detail := ""
			if rep.IdleCloseRace > 0 {
				detail = fmt.Sprintf(", %d of them idle-close races", rep.IdleCloseRace)
			}
			s += fmt.Sprintf(" (%d lost: %s%s)", rep.Lost, rep.LostClasses(), detail)
		}
		parts = append(parts, s)
	}
	var why []string
	if lost > 0 && races == lost {
		why = append(why, "every loss an idle-close race (the server closed a kept-alive connection it thought idle as a request went out on it), which no run is sure to meet")
	}
	if row.AsExpected == row.Runs {
		why = append(why, fmt.Sprintf("every run within its claim (%s)", row.Expected))
	} else {
		why = append(why, fmt.Sprintf("%d of %d runs not as claimed (%s; below)", row.Runs-row.AsExpected, row.Runs, row.Expected))
	}
	return fmt.Sprintf("%s, %s: %s: %s", row.Config, row.Load, strings.Join(parts, ", "), strings.Join(why, "; "))
}

// outage is the longest outage in words: its length and its requests.
func outage(row Row) string {
	if row.LongestOutageRequests == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f ms (%d requests)", row.LongestOutageMs, row.LongestOutageRequests)
}

func (l LatencyPair) String() string { return fmt.Sprintf("%.1f / %.1f ms", l.P50, l.P99) }

func classes(m map[loadgen.Class]int) string {
	if s := loadgen.ClassCounts(m); s != "" {
		return s
	}
	return "—"
}

func pct(p float64) string {
	switch {
	case p == 0:
		return "0"
	case p < 0.01:
		return "<0.01"
	}
	return fmt.Sprintf("%.2f", p)
}

func notJudgedNote(row Row) string {
	if n := row.Runs - row.Judged; n > 0 {
		return fmt.Sprintf(" (%d not judged)", n)
	}
	return ""
}

// WriteJSON writes the results, every run with its evidence.
func (r *Results) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(r)
}

// ReadResults reads a results.json.
func ReadResults(path string) (*Results, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s is not a nodrop bench results.json: %w", path, err)
	}
	if r.Version != FormatVersion {
		return nil, fmt.Errorf("%s: results format version %d, this nodrop reads %d", path, r.Version, FormatVersion)
	}
	return &r, nil
}

// WriteFiles writes results.md and results.json into dir.
func (r *Results) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, write := range map[string]func(io.Writer) error{"results.md": r.WriteMarkdown, "results.json": r.WriteJSON} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		werr := write(f)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

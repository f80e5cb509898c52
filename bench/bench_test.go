package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

var update = flag.Bool("update", false, "rewrite the golden files from what the writers give now")

// recorded reads the runs in testdata/recorded: results of real runs as
// the suite keeps them (out/results/*.json), each a scenario.Result (the
// losses listed cut to 20). Runs of one configuration and load are
// numbered in file-name order.
func recorded(t *testing.T) []scenario.Record {
	t.Helper()
	files, err := filepath.Glob("testdata/recorded/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recorded runs: %v", err)
	}
	sort.Strings(files)
	var runs []scenario.Record
	n := map[[2]string]int{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var res scenario.Result
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		key := [2]string{res.Scenario, res.Traffic[0].Name}
		n[key]++
		runs = append(runs, FromResult(res.Scenario, n[key], &res, nil)...)
	}
	return runs
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./bench -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from what the writer gives now (go test ./bench -update rewrites it after a deliberate change):\n%s", path, got)
	}
}

func TestMarkdownOfRecordedRuns(t *testing.T) {
	runs := recorded(t)
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "results.md", b.Bytes())
}

// results.json holds every run whole: read back, it gives the same rows
// and the same table.
func TestJSONRoundTrip(t *testing.T) {
	runs := recorded(t)
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	dir := t.TempDir()
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResults(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Summarize(back.Runs), back.Rows) || len(back.Runs) != len(runs) {
		t.Errorf("rows read back differ from the rows of the runs read back")
	}
	for i := range runs {
		if back.Runs[i].Report == nil || len(back.Runs[i].Report.Timeline) != len(runs[i].Report.Timeline) || len(back.Runs[i].Events) != len(runs[i].Events) {
			t.Fatalf("run %d lost its evidence on the way through JSON", i)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := back.WriteMarkdown(&again); err != nil {
		t.Fatal(err)
	}
	if again.String() != string(md) {
		t.Errorf("the table from results.json differs from results.md")
	}
}

func TestReadResultsRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"junk.json": "{not json", "other.json": `{"version": 99}`} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := ReadResults(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v; want an error naming the file", name, err)
		}
	}
}

// Diff on recorded runs: the old benchmark as recorded, the new one with
// a lossless configuration's second run replaced by a lossy run (as a
// chart change that broke its preStop would give).
func TestDiffOfRecordedRuns(t *testing.T) {
	runs := recorded(t)
	old := &Results{Version: FormatVersion, Runs: runs, Rows: Summarize(runs)}
	var lossy, lossless *scenario.Record
	for i := range runs {
		r := &runs[i]
		if r.Report == nil {
			continue
		}
		if lossy == nil && r.Report.Lost > 0 {
			lossy = r
		}
		if lossless == nil && r.Report.Lost == 0 && r.Run == 2 {
			lossless = r
		}
	}
	if lossy == nil || lossless == nil {
		t.Fatal("the recorded runs need a lossy run and a lossless second run")
	}
	var newRuns []scenario.Record
	for _, r := range runs {
		if r.Config == lossless.Config && r.Load == lossless.Load && r.Run == 2 {
			r = *lossy
			r.Config, r.Load, r.Run = lossless.Config, lossless.Load, 2
		}
		newRuns = append(newRuns, r)
	}
	newRuns = append(newRuns, scenario.Record{Config: "my-app", Load: "fresh", Run: 1, Verdict: loadgen.NotJudged, Error: "calibration lost requests"})
	now := &Results{Version: FormatVersion, Runs: newRuns, Rows: Summarize(newRuns)}
	changes := Diff(old, now)
	if !Worsened(changes) {
		t.Errorf("a lossless configuration that lost in one run must be worse")
	}
	var b bytes.Buffer
	if err := WriteDiff(&b, changes); err != nil {
		t.Fatal(err)
	}
	golden(t, "diff.md", b.Bytes())
}

func TestCompare(t *testing.T) {
	row := func(judged, lossless int, lossPct float64) Row {
		return Row{Runs: judged, Judged: judged, LosslessRuns: lossless, LossPct: lossPct}
	}
	for _, tc := range []struct {
		name     string
		old, new Row
		want     string
	}{
		{"lossless both", row(3, 3, 0), row(3, 3, 0), Same},
		{"lost in a run now", row(3, 3, 0), row(3, 2, 0.01), Worse},
		{"fixed", row(3, 0, 7), row(3, 3, 0), Better},
		{"loses about as much", row(3, 0, 7), row(3, 0, 9), Same},
		{"loses twice as much", row(3, 0, 4), row(3, 0, 8), Worse},
		{"loses half as much", row(3, 0, 8), row(3, 0, 4), Better},
		{"nothing judged", row(3, 3, 0), Row{Runs: 3}, Incomparable},
	} {
		if got, why := compare(tc.old, tc.new); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, why, tc.want)
		}
	}
}

func TestRowFlaps(t *testing.T) {
	for _, tc := range []struct {
		verdicts []loadgen.Verdict
		want     bool
	}{
		{[]loadgen.Verdict{loadgen.Lossy, loadgen.Lossy, loadgen.Lossy}, false},
		{[]loadgen.Verdict{loadgen.Lossy, loadgen.NotJudged, loadgen.Lossy}, false},
		{[]loadgen.Verdict{loadgen.Lossy, loadgen.Lossless, loadgen.Lossy}, true},
	} {
		if got := (Row{Verdicts: tc.verdicts}).Flaps(); got != tc.want {
			t.Errorf("%v: flaps %v, want %v", tc.verdicts, got, tc.want)
		}
	}
}

func TestStepSaysWhereTheBenchmarkIs(t *testing.T) {
	s := Step{Index: 3, Total: 12, Config: "no-prestop", Load: "fresh", Run: 1, Runs: 3, Elapsed: 65 * time.Second, ETA: 4*time.Minute + 30*time.Second}
	if got, want := s.String(), "[3/12] no-prestop, fresh, run 1 of 3 (elapsed 1m5s, about 4m30s left)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// A run's spared losses (scenario.Outcome.Spared) travel into its
// scenario.Record and results.md lists them under the run, so a reader sees
// why a loss of a class the claim lacks did not fail it.
func TestMarkdownListsSparedLosses(t *testing.T) {
	line := "timeout sent at +18.554s from client port 39324: a connection attempt that followed its port's reset connection"
	res := &scenario.Result{Scenario: "start-sh-no-exec", Disruption: "image", Traffic: []scenario.TrafficResult{{
		Name:    "keepalive",
		Report:  &loadgen.Report{Total: 10, Lost: 2, LostByClass: map[loadgen.Class]int{loadgen.EOF: 1, loadgen.Timeout: 1}},
		Outcome: scenario.Outcome{Expected: loadgen.Lossy, Got: loadgen.Lossy, Spared: []string{line}},
	}}}
	runs := FromResult("start-sh-no-exec", 2, res, nil)
	if len(runs) != 1 || !reflect.DeepEqual(runs[0].Spared, []string{line}) || !runs[0].AsExpected {
		t.Fatalf("FromResult: %+v; want the spared line kept and the run as expected", runs)
	}
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	if want := "- start-sh-no-exec, keepalive, run 2: " + line + "\n"; !strings.Contains(b.String(), want) {
		t.Errorf("results.md does not list the spared loss as %q:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "did not show what was expected") {
		t.Errorf("a run whose only foreign loss was spared is listed as unexpected:\n%s", b.String())
	}
}

// A row whose runs disagree is named with each run's verdict and, where
// the evidence says it, why: here every loss an idle-close race, and
// every run within a claim that allows them.
func TestMarkdownSaysWhyARowFlapped(t *testing.T) {
	claim := loadgen.Verdict("lossless or ≤ 10 idle-close races")
	run := func(lost int) *scenario.Result {
		got := loadgen.Lossless
		if lost > 0 {
			got = loadgen.Lossy
		}
		return &scenario.Result{Scenario: "nginx-init-usr2-long-lived", Traffic: []scenario.TrafficResult{{
			Name:    "long-lived HTTP/1.1",
			Report:  &loadgen.Report{Total: 5000, Lost: lost, IdleCloseRace: lost, LostByClass: map[loadgen.Class]int{loadgen.Reset: lost}},
			Outcome: scenario.Outcome{Expected: claim, Got: got},
		}}}
	}
	var runs []scenario.Record
	for i, lost := range []int{0, 0, 2} {
		runs = append(runs, FromResult("nginx-init-usr2-long-lived", i+1, run(lost), nil)...)
	}
	r := &Results{Version: FormatVersion, RunsPerConfig: 3, Runs: runs, Rows: Summarize(runs)}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1 of 1 rows flapped",
		"run 3 lossy (2 lost: reset 2, 2 of them idle-close races)",
		"every loss an idle-close race",
		"every run within its claim (lossless or ≤ 10 idle-close races)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("results.md lacks %q:\n%s", want, b.String())
		}
	}
	// index.html names the row in the same words.
	var page bytes.Buffer
	if err := r.WriteHTML(&page, "", nil); err != nil {
		t.Fatal(err)
	}
	if want := "every run within its claim (lossless or ≤ 10 idle-close races)"; !strings.Contains(page.String(), "2 of them idle-close races") || !strings.Contains(page.String(), want) {
		t.Errorf("index.html's flap list lacks the runs' races or %q", want)
	}
}

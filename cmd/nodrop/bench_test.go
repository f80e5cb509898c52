package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/bench"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/manifest"
	"github.com/nodrop-dev/nodrop/scenario"
)

// writeBench writes a benchmark of one configuration, "my-app" under
// fresh load, claimed lossless, whose runs lost what lost says, into
// dir, and returns its results.json.
func writeBench(t *testing.T, dir, disruption string, lost ...int) string {
	t.Helper()
	var runs []scenario.Record
	for i, n := range lost {
		v := loadgen.Lossless
		if n > 0 {
			v = loadgen.Lossy
		}
		runs = append(runs, scenario.Record{Config: "my-app", Load: "fresh", Run: i + 1, Disruption: disruption, Expected: loadgen.Lossless, Verdict: v, AsExpected: n == 0,
			Report: &loadgen.Report{Total: 10000, Lost: n, LostByClass: map[loadgen.Class]int{loadgen.Refused: n}}})
	}
	r := &bench.Results{Version: bench.FormatVersion, RunsPerConfig: len(lost), Runs: runs, Rows: bench.Summarize(runs)}
	if err := r.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "results.json")
}

// bench diff exits 1 when a configuration got worse, 0 otherwise, and
// prints the table either way.
func TestBenchDiffExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, lost ...int) string { return writeBench(t, filepath.Join(dir, name), "", lost...) }
	good, bad := write("good", 0, 0, 0), write("bad", 0, 12, 0)
	for _, tc := range []struct {
		old, new string
		code     int
		want     string
	}{
		{good, good, exitOK, "| my-app | fresh | 3/3 lossless, 0% lost | 3/3 lossless, 0% lost | same |"},
		{good, bad, exitLost, "| worse | lossless in 2 of 3 runs, was 3 of 3 |"},
		{bad, good, exitOK, "| better |"},
	} {
		code, stdout, stderr := runCLI(t, "bench", "diff", tc.old, tc.new)
		if code != tc.code || !strings.Contains(stdout, tc.want) {
			t.Errorf("diff %s %s: exit %d, stdout:\n%s\nstderr: %s\nwant exit %d and %q", filepath.Base(filepath.Dir(tc.old)), filepath.Base(filepath.Dir(tc.new)), code, stdout, stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(good); err != nil {
		t.Fatal(err)
	}
}

// bench merge joins parts into one benchmark with the exit status of
// nodrop bench; bad input writes nothing and exits 2.
func TestBenchMerge(t *testing.T) {
	dir := t.TempDir()
	write := func(name, disruption string, lost ...int) string {
		return writeBench(t, filepath.Join(dir, name), disruption, lost...)
	}
	a, b := write("a", "restart", 0, 0, 0), write("b", "restart", 0, 0)
	out := filepath.Join(dir, "merged")
	code, stdout, stderr := runCLI(t, "bench", "merge", a, b, "--out", out)
	if code != exitOK || !strings.Contains(stdout, "5 runs each, merged from 2 benchmarks") || !strings.Contains(stdout, "| my-app | fresh | 5 |") {
		t.Fatalf("merge of two lossless parts: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, f := range []string{"results.md", "results.json", "index.html"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("merged %s: %v", f, err)
		}
	}
	if code, _, _ := runCLI(t, "bench", "merge", a, write("lossy", "restart", 0, 7), "--out", filepath.Join(dir, "m2")); code != exitLost {
		t.Errorf("merge with a lossy run of a lossless claim: exit %d, want %d", code, exitLost)
	}
	for name, args := range map[string][]string{
		"one part":           {a},
		"a missing part":     {a, filepath.Join(dir, "nope.json")},
		"another disruption": {a, write("image", "image change", 0)},
	} {
		bad := filepath.Join(dir, "bad")
		code, _, stderr := runCLI(t, append([]string{"bench", "merge", "--out", bad}, args...)...)
		if code != exitBadInput || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%s: exit %d, stderr %q; want %d and one line", name, code, stderr, exitBadInput)
		}
		if _, err := os.Stat(bad); !os.IsNotExist(err) {
			t.Errorf("%s: %s was made", name, bad)
		}
	}
}

// Your manifests and your chart are configurations of a benchmark as the
// catalogue's are: each plans, under the attempts and modes bench was
// given, before any cluster is touched.
func TestBenchPlansYourManifestsAndChart(t *testing.T) {
	root := filepath.Join("..", "..", "examples", "shop")
	o := benchOptions{files: []string{filepath.Join(root, "deploy.yaml")}, chart: manifest.Chart{Path: filepath.Join(root, "chart")},
		runs: 2, attempts: 3, mode: "both", disruption: "restart", rate: 500}
	p, err := planBench(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.checks) != 2 || len(p.modes) != 2 {
		t.Fatalf("planned %d configurations of yours under %v; want the manifest and the chart under both modes", len(p.checks), p.modes)
	}
	if p.checks[0].name != "shop (-f "+o.files[0]+")" || p.checks[1].name != "shop (--chart "+o.chart.Path+")" {
		t.Errorf("the manifest and the chart render the same Deployment; named %q and %q, want them apart", p.checks[0].name, p.checks[1].name)
	}
	for i, co := range p.checkOpt {
		if co.attempts != 3 || co.rate != 500 {
			t.Errorf("configuration %d runs with %+v", i, co)
		}
	}
	o.chart = manifest.Chart{Set: []string{"replicas=3"}}
	o.files = nil
	if _, err := planBench(o); err == nil || !strings.Contains(err.Error(), "go with --chart") {
		t.Errorf("--set without --chart: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/bench"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/manifest"
	"github.com/nodrop-dev/nodrop/scenario"
)

// benchOptions are nodrop bench's flags.
type benchOptions struct {
	variants    []string
	hot         []string
	all         bool
	attempts    int
	files       []string
	runs        int
	mode        string
	disruption  string
	rate        int
	out         string
	clusterName string
	// kindConfig is the kind config of the cluster bench brings up or
	// reuses (cluster up's --config).
	kindConfig string
	stallTrace string
	verbose    bool
	// chart is a Helm chart of yours, run as one more configuration.
	chart manifest.Chart
	// loadImages are local images of yours to load into the nodes first.
	loadImages []string
	// loadFrom: where the load comes from (--load-from and its flags).
	loadFrom loadFromOptions
	// stdin is where -f - reads from.
	stdin io.Reader
}

func newBenchCommand() *cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "bench [--variants a,b | --all] [--hot c,d] [-f app.yaml ...] [--chart DIR] [flags]",
		Short: "Run configurations side by side, several times each, and compare them",
		Long: `Run each configuration (catalogue variants by name, hot-upgrade cases by name
with --hot, each of your manifests with -f, your Helm chart with --chart)
--runs times on nodrop's kind cluster, each run in a fresh namespace, and
write to --out:

  results.md    a row per configuration and load: requests, lost by class,
                loss %, longest outage, how long the rollout took, latency
                before and during it, connections opened, how many runs
                were lossless, and whether the expected verdict held
  results.json  the same, with every run's full report and timeline
  plots/        a picture per configuration and load (requests per 100 ms
                by outcome, with what Kubernetes did as lines) and an
                overview of them all
  index.html    the table, sortable, and the pictures; readable offline

A catalogue variant is rolled under each load mode (--mode) by --disruption.
A hot-upgrade case does its own upgrade under its own loads (nginx's binary
swapped in a running pod; nodrop's proxy upgraded by an OpenKruise SidecarSet,
which --hot installs); --mode, --disruption and --rate do not change it. Both
are expected to show their claim (a lossy one must lose, as its mechanism
says); your manifests are expected to lose nothing. ` + "`nodrop bench diff OLD.json NEW.json`" + ` says what got better
or worse between two benchmarks.

Exit status: 0 every run showed what was expected, 1 a run did not, 2 bad
input (nothing run), 3 a run was not judged (load not delivered, set-up
broken, interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.stdin = cmd.InOrStdin()
			return runBench(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.variants, "variants", nil, "catalogue variants to run, comma-separated (nodrop variants lists them)")
	f.BoolVar(&o.all, "all", false, "run every catalogue variant and hot-upgrade case")
	f.StringSliceVar(&o.hot, "hot", nil, "hot-upgrade cases to run, comma-separated: "+strings.Join(hotSlugs(), ", "))
	f.StringArrayVarP(&o.files, "filename", "f", nil, "a manifest of your own (file or directory, or - for standard input), run as one configuration; repeatable")
	chartFlags(f, &o.chart)
	f.StringArrayVar(&o.loadImages, "load-image", nil, "local Docker image of yours to load into the kind nodes first (no registry needed); repeatable")
	f.IntVar(&o.runs, "runs", 3, "runs of each configuration and load mode")
	f.IntVar(&o.attempts, "attempts", scenario.DefaultAttempts, "run a run that ends not judged (load not delivered, calibration failed) again, up to this many times in all; a judged run is never repeated, and results.md lists the ones run again")
	f.StringVar(&o.mode, "mode", "both", "load mode: keepalive, fresh or both")
	f.StringVar(&o.disruption, "disruption", "restart", "what to do under load: restart, image (catalogue: to the v2 image; your manifests: image=REF), scale-down, delete-pod")
	f.IntVar(&o.rate, "rate", fixtures.RolloutRate, "requests per second (a variant with a load of its own keeps it)")
	f.StringVar(&o.out, "out", "nodrop-bench", "directory for results.md and results.json")
	f.StringVar(&o.clusterName, "cluster", cluster.DefaultName, "name of nodrop's kind cluster")
	f.StringVar(&o.kindConfig, "config", "", "kind config of that cluster, as cluster up's --config (default: nodrop's single-node config); a cluster made from another config is refused, not replaced")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "show each run's phases")
	f.StringVar(&o.stallTrace, "stall-trace", "", "write the Go execution trace around each stall of the load generator of 50ms or more to this folder (go tool trace)")
	o.loadFrom.flags(f, false)
	cmd.AddCommand(newBenchDiffCommand(), newBenchMergeCommand())
	return cmd
}

// benchPlan is a benchmark's input, checked before the cluster is
// touched.
type benchPlan struct {
	variants []fixtures.Variant
	hot      []fixtures.HotCase
	checks   []*checkPlan
	checkOpt []checkOptions
	// from says which flag gave each of checks (-f FILE, --chart DIR).
	from  []string
	modes []fixtures.Mode
}

func planBench(o benchOptions) (*benchPlan, error) {
	p := &benchPlan{}
	modes, ok := checkModes[o.mode]
	if !ok {
		return nil, usagef("--mode %q: want keepalive, fresh or both", o.mode)
	}
	p.modes = modes
	if o.attempts < 1 || o.attempts > 10 {
		return nil, usagef("--attempts must be 1–10, got %d", o.attempts)
	}
	if o.runs < 1 || o.runs > 100 {
		return nil, usagef("--runs must be 1–100, got %d", o.runs)
	}
	if o.rate <= 0 {
		return nil, usagef("--rate must be > 0, got %d", o.rate)
	}
	if err := o.loadFrom.check(false, ""); err != nil {
		return nil, err
	}
	switch {
	case o.all && (len(o.variants) > 0 || len(o.hot) > 0):
		return nil, usagef("give --variants and --hot, or --all, not both")
	case o.all:
		p.variants, p.hot = fixtures.Catalogue, fixtures.HotCases()
	}
	for _, name := range o.hot {
		c, err := fixtures.LookupHot(strings.TrimSpace(name))
		if err != nil {
			return nil, usagef("--hot: %v", err)
		}
		p.hot = append(p.hot, c)
	}
	for _, name := range o.variants {
		v, err := fixtures.Lookup(strings.TrimSpace(name))
		if err != nil {
			return nil, usagef("--variants: %v", err)
		}
		p.variants = append(p.variants, v)
	}
	switch d := o.disruption; {
	case d == "image" || d == "restart" || d == "scale-down" || d == "delete-pod":
	case strings.HasPrefix(d, "image=") && len(p.variants) == 0:
	case strings.HasPrefix(d, "image="):
		return nil, usagef("--disruption %s: catalogue variants change to their own v2 image; say --disruption image", d)
	default:
		return nil, usagef("--disruption %q: want restart, image, scale-down or delete-pod", d)
	}
	for _, f := range o.files {
		if err := p.addYours(o, checkOptions{files: []string{f}}, "-f "+f); err != nil {
			return nil, err
		}
	}
	if o.chart.Path != "" {
		if err := p.addYours(o, checkOptions{chart: o.chart}, "--chart "+o.chart.Path); err != nil {
			return nil, err
		}
	} else if len(o.chart.Values) > 0 || len(o.chart.Set) > 0 || o.chart.Release != "" {
		return nil, usagef("--values, --set and --release go with --chart")
	}
	p.nameYours()
	if len(p.variants) == 0 && len(p.hot) == 0 && len(p.checks) == 0 {
		return nil, usagef("nothing to run: name catalogue variants (--variants a,b or --all), hot-upgrade cases (--hot c,d) or your manifests (-f app.yaml, --chart DIR)")
	}
	return p, nil
}

// addYours plans one configuration of yours (the manifests or chart in
// co) as check would run it under the benchmark's load, named from in the
// flags that gave it.
func (p *benchPlan) addYours(o benchOptions, co checkOptions, from string) error {
	if o.disruption == "image" {
		return usagef("--disruption image: for your manifests and charts, name the new image: --disruption image=REF")
	}
	co.stdin, co.mode, co.disruption, co.rate, co.timeout = o.stdin, o.mode, o.disruption, o.rate, loadgen.DefaultTimeout
	co.runs, co.attempts, co.path, co.method, co.namespace = 1, o.attempts, "/", "GET", "nodrop-bench"
	cp, err := planCheck(co)
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	p.checks, p.checkOpt, p.from = append(p.checks, cp), append(p.checkOpt, co), append(p.from, from)
	return nil
}

// nameYours names each configuration of yours by its Deployment, and by
// where it came from too when two share a name (a manifest and the chart
// rendering the same app), so their rows stay apart.
func (p *benchPlan) nameYours() {
	seen := map[string]int{}
	for _, cp := range p.checks {
		seen[cp.name]++
	}
	for i, cp := range p.checks {
		if seen[cp.name] > 1 {
			cp.name += " (" + p.from[i] + ")"
		}
	}
}

// entries are the plan's configurations × load modes, the catalogue's
// first; images are the variants' image references in the cluster.
func (p *benchPlan) entries(o benchOptions, images map[string]string) ([]bench.Entry, error) {
	var out []bench.Entry
	for _, v := range p.variants {
		for _, m := range variantModes(v, p.modes) {
			c := fixtures.RolloutCase{Variant: v, Mode: m, Disruption: o.disruption, Rate: o.rate}
			s, err := c.Scenario(images)
			if err != nil {
				return nil, err
			}
			s.NamespacePrefix = "bench-" + v.Name
			out = append(out, bench.Entry{Config: v.Name, Scenario: s})
		}
	}
	for _, c := range p.hot {
		s, err := c.Scenario(images)
		if err != nil {
			return nil, err
		}
		out = append(out, bench.Entry{Config: c.Slug(), Scenario: s})
	}
	for i, cp := range p.checks {
		for _, m := range p.modes {
			out = append(out, bench.Entry{Config: cp.name, Scenario: cp.scenario(p.checkOpt[i], m)})
		}
	}
	return out, nil
}

// variantModes are the modes of --mode a variant is rolled under; a
// variant whose claim is about none of them (gRPC's) is rolled under its
// own.
func variantModes(v fixtures.Variant, asked []fixtures.Mode) []fixtures.Mode {
	var out []fixtures.Mode
	for _, m := range asked {
		if v.Expects(m) != "" {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return v.Modes()
	}
	return out
}

func runBench(cmd *cobra.Command, o benchOptions) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	plan, err := planBench(o)
	if err != nil {
		return err
	}
	log := progress.New(stderr, o.verbose)
	sched.OneP()
	sched.PreferLoadGenerator()
	// Builds and loads the catalogue's images, as cluster up does (no
	// Docker engine is bad input); the first time on a machine this also
	// builds the node image.
	ready, err := clusterUp(ctx, log, upOptions{name: o.clusterName, config: o.kindConfig, k8sVersion: nodeimage.DefaultKubernetesVersion, withKruise: plan.needsKruise()})
	if err != nil {
		return notJudgedUnlessBadInput(err)
	}
	entries, err := plan.entries(o, ready.Images)
	if err != nil {
		return notJudgedUnlessBadInput(err)
	}
	env, err := checkEnv(ctx, checkOptions{clusterName: o.clusterName, verbose: o.verbose, loadImages: o.loadImages}, log)
	if err != nil {
		return notJudgedUnlessBadInput(err)
	}
	stalls := startStallWatch(ctx, o.stallTrace, env.Log)
	defer stalls.Stop()
	env.Witness, env.OnStall, env.Favour = stalls.Witness(), stalls.OnStall(), sched.DuringLoad
	if env.Generators, err = o.loadFrom.generators(ctx, o.clusterName, env, log); err != nil {
		return notJudgedUnlessBadInput(err)
	}
	if err := fromClusterWhereNeeded(ctx, entries, o.clusterName, env, log); err != nil {
		return notJudgedUnlessBadInput(err)
	}
	if !o.verbose {
		env.Log = nil
	}
	rows := 0
	for _, e := range entries {
		rows += len(e.Scenario.Traffic)
	}
	fmt.Fprintf(stderr, "nodrop bench: %d configurations (%d rows of configuration × load), %d runs each, %d runs in all\n", len(entries), rows, o.runs, len(entries)*o.runs)
	res := bench.Run(ctx, env, bench.Plan{Entries: entries, Runs: o.runs, Attempts: o.attempts}, func(s bench.Step) {
		fmt.Fprintln(stderr, s)
	})
	return finishBench(stdout, stderr, res, o.out)
}

// fromClusterWhereNeeded gives the entries whose load must come from the
// cluster (clients that resolve the Service's name) generator pods of
// the default size, when the benchmark's own load comes from this
// process.
func fromClusterWhereNeeded(ctx context.Context, entries []bench.Entry, clusterName string, env scenario.Env, log *progress.Logger) error {
	if env.Generators != nil {
		return nil
	}
	var gens scenario.Sender
	for i, e := range entries {
		if !e.Scenario.LoadFromCluster() {
			continue
		}
		if gens == nil {
			var err error
			if gens, err = (loadFromOptions{from: "cluster", pods: 2}).generators(ctx, clusterName, env, log); err != nil {
				return err
			}
		}
		entries[i].Generators = gens
	}
	return nil
}

// finishBench writes a benchmark's files into dir, prints its table and
// where the files are, and returns its exit status (benchExit).
func finishBench(stdout, stderr io.Writer, res *bench.Results, dir string) error {
	if err := res.WriteAll(dir); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	fmt.Fprintln(stdout)
	if err := res.WriteMarkdown(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "\nresults: %s (the table and pictures), results.md, results.json in %s (%.0fs)\n", filepath.Join(dir, "index.html"), dir, res.TookS)
	return benchExit(res)
}

// benchExit: a judged run that did not show what was expected is 1;
// else a run that was not judged (or a benchmark cut short) is 3.
func benchExit(res *bench.Results) error {
	if bad := res.Unexpected(); len(bad) > 0 {
		return exitError{code: exitLost, msg: fmt.Sprintf("%d of %d runs did not show what was expected (see results.md)", len(bad), len(res.Runs))}
	}
	if res.Interrupted {
		return exitError{code: exitNotJudged, msg: "interrupted: not every run ran (what the runs created was deleted)"}
	}
	if res.NotJudged() {
		return exitError{code: exitNotJudged, msg: "some runs were not judged (see results.md)"}
	}
	return nil
}

func newBenchDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff OLD.json NEW.json",
		Short: "Say which configurations got better or worse between two benchmarks",
		Long: `Compare two results.json files of nodrop bench, row by row (configuration ×
load): fewer lossless runs is worse, more is better; between rows that lose in
every run, a loss rate 1.5 times higher is worse and 1.5 times lower better.

Exit status: 0 nothing got worse, 1 something did, 2 bad input.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usagef("bench diff takes two results.json files: OLD NEW")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			old, err := bench.ReadResults(args[0])
			if err != nil {
				return usageError{err}
			}
			new, err := bench.ReadResults(args[1])
			if err != nil {
				return usageError{err}
			}
			changes := bench.Diff(old, new)
			if err := bench.WriteDiff(cmd.OutOrStdout(), changes); err != nil {
				return err
			}
			if bench.Worsened(changes) {
				return exitError{code: exitLost, msg: "a configuration got worse"}
			}
			return nil
		},
	}
}

func newBenchMergeCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge PART.json PART.json ... [--out DIR]",
		Short: "Join benchmarks run in parts into one",
		Long: `Join the results.json files of benchmarks run in parts (a long benchmark split
over several nights, or one that was interrupted and run again for the rest)
into one benchmark: every run of every part, a configuration's runs numbered
on from one part to the next, the rows and their repeatability counted over
all of them. --out gets results.md, results.json, the pictures and
index.html, as nodrop bench writes them. The parts must have run each
configuration under the same disruption.

Exit status as for nodrop bench: 0 every run showed what was expected, 1 a
judged run did not, 2 bad input (nothing written), 3 a run was not judged.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("bench merge takes two or more results.json files")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var parts []*bench.Results
			for _, a := range args {
				r, err := bench.ReadResults(a)
				if err != nil {
					return usageError{err}
				}
				parts = append(parts, r)
			}
			merged, err := bench.Merge(parts...)
			if err != nil {
				return usageError{err}
			}
			return finishBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), merged, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "nodrop-bench", "directory for the merged results.md, results.json, pictures and index.html")
	return cmd
}

// needsKruise reports whether a SidecarSet case is in the plan.
func (p *benchPlan) needsKruise() bool {
	for _, c := range p.hot {
		if _, ok := c.(fixtures.SidecarCase); ok {
			return true
		}
	}
	return false
}

// hotSlugs names every hot-upgrade case.
func hotSlugs() []string {
	var out []string
	for _, c := range fixtures.HotCases() {
		out = append(out, c.Slug())
	}
	return out
}

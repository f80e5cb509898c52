package suites_test

import (
	"context"
	"os"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/incluster"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites"
)

// specNamespace creates the spec's namespace, deleted after it, with a
// recorder of what happens in it and, on failure, a dump of its pods,
// events and logs.
func specNamespace(ctx context.Context, prefix, podSecurity string) (string, *probes.Recorder) {
	ns, err := kube.CreateNamespace(ctx, client, prefix, podSecurity)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) error { return kube.DeleteNamespace(ctx, client, ns, timeouts) })
	// Registered after the namespace's deletion, so it runs first.
	DeferCleanup(func(ctx context.Context) {
		if CurrentSpecReport().Failed() {
			kube.Dump(ctx, client, ns, GinkgoWriter)
		}
	})
	rec, err := probes.Start(ctx, client, ns)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(rec.Stop)
	return ns, rec
}

// verdictLabel is a spec's label by what its case claims: a negative
// control (known-lossy) or a configuration that must lose nothing.
func verdictLabel(lossy bool) Labels {
	if lossy {
		return suites.KnownLossy
	}
	return suites.Lossless
}

// caseDecorators are a table entry's label, its timeout and, for a case
// beyond CI's subset, the extended label.
func caseDecorators(lossy, extended bool, timeout any) []any {
	args := []any{verdictLabel(lossy), timeout}
	if extended {
		args = append(args, suites.Extended)
	}
	return args
}

// attempts is how many times a spec runs a scenario that ends not judged
// (the CLI's default is scenario.DefaultAttempts). The suites run on CI's
// two cores beside the whole cluster, where a CPU-heavy configuration (an
// exec probe, a proxy in front) can hold the load generator back 50 ms or
// more three times in a row (exec-readiness under fresh load, a
// clean-clone CI run, 2026-11-26); such a run measured nothing, so
// running it again hides no loss, and every attempt is in the spec's
// report. Raising the generator's priority instead starved the pods
// under test (docs/ci.md).
const attempts = 5

// fitted lets a catalogue run's load fit the machine as `nodrop check`
// does: a calibration refused for CPU pressure runs again with the load
// at half its rate, once (Scenario.MinRate), and the run is judged at the
// rate it calibrated at, the reason in its report. Without it such a run
// waits for quiet and calibrates again at the same rate, and on a machine
// that never holds that rate beside the cluster ends not judged.
func fitted(s scenario.Scenario) scenario.Scenario {
	if len(s.Traffic) > 0 {
		s.MinRate = max(1, s.Traffic[0].Config.Rate/2)
	}
	return s
}

// helperProgram is this test binary, which runs nodrop's helper
// processes (TestMain): the delay faults' packet holder runs there, not
// beside the load generator.
func helperProgram() string {
	self, err := os.Executable()
	if err != nil {
		return "" // the holder then runs in this process
	}
	return self
}

// scenarioEnv is the suite's cluster as the scenario library takes it:
// progress and a failed run's namespace dump go to the spec's output;
// with $NODROP_LOAD_SLOTS, runs of every process share the load slots.
func scenarioEnv() scenario.Env {
	return newScenarioEnv(restConfig, scenario.Env{
		NodeIP: suiteEnv.NodeIPs[0], Nodes: cluster.Shell{Cluster: suiteEnv.Name}, Ingress: suiteEnv.Ingress,
	})
}

// podGenerators send the load of runs whose clients must be in the
// cluster (they resolve the Service's name there): generator pods of a
// Job, whose image is the suites' own binary, built and loaded into the
// nodes once per process (inClusterGenerators).
var podGenerators scenario.Sender

// inClusterGenerators is podGenerators, made the first time a spec asks.
func inClusterGenerators(ctx context.Context) scenario.Sender {
	GinkgoHelper()
	if podGenerators == nil {
		log := progress.New(GinkgoWriter, false)
		ref, err := images.Generator(ctx, helperProgram(), suiteEnv.StateDir, log)
		Expect(err).NotTo(HaveOccurred(), "the generator's image")
		Expect(cluster.LoadImages(ctx, suiteEnv.Name, []string{ref}, log)).To(Succeed())
		podGenerators = incluster.Generators{REST: restConfig, Client: client, Image: ref, Pods: 2, Log: log}
	}
	return podGenerators
}

// envFor is the suite's env for s: with generator pods when its load
// must come from the cluster.
func envFor(ctx context.Context, s scenario.Scenario) scenario.Env {
	GinkgoHelper()
	env := scenarioEnv()
	if s.LoadFromCluster() {
		env.Generators = inClusterGenerators(ctx)
	}
	return env
}

// newScenarioEnv is a scenario.Env on the cluster rc reaches, with the
// suite's parts every cluster's runs share: its timeouts, progress and a
// failed run's dump to the spec's output, the helper program, the
// witness and the stall trace, and (with $NODROP_LOAD_SLOTS) the load
// slots of every process.
func newScenarioEnv(rc *rest.Config, e scenario.Env) scenario.Env {
	e.Timeouts, e.Log, e.Dump = timeouts, progress.New(GinkgoWriter, false), GinkgoWriter
	e.HelperProgram, e.Witness, e.OnStall = helperProgram(), stallWitness, stallTrace.Stalled
	if loadSlots != nil {
		e.LoadSlots = loadSlots
	}
	if !parallel(os.Args[1:]) {
		// One generator in the real-time class holds at most one CPU;
		// several could take both from the pods under test.
		e.Favour = sched.DuringLoad
	}
	env, err := scenario.NewEnv(context.Background(), rc, e)
	Expect(err).NotTo(HaveOccurred())
	return env
}

// record adds a run's evidence to the spec's report: per load, the
// summary row, the load's summary, the losses next to what happened then,
// and the timeline. It asserts nothing.
func record(res *scenario.Result) {
	if res != nil {
		if err := writeResult(res); err != nil {
			AddReportEntry("result not written", err.Error())
		}
	}
	for _, t := range res.Traffic {
		if t.Calibration != nil {
			AddReportEntry("calibration "+t.Name, ReportEntryVisibilityFailureOrVerbose, t.Calibration.Summary())
		}
	}
	for _, row := range res.Rows() {
		AddReportEntry("verdict", row)
	}
	for _, t := range res.Traffic {
		if t.Report == nil {
			continue
		}
		AddReportEntry("load "+t.Name, t.Report.Summary())
		if len(t.Outcome.Spared) > 0 {
			AddReportEntry("losses of classes the mechanism lacks, explained "+t.Name, strings.Join(t.Outcome.Spared, "\n"))
		}
		AddReportEntry("losses explained "+t.Name, ReportEntryVisibilityFailureOrVerbose, probes.Explain(t.Report, res.Events))
	}
	if len(res.Traffic) > 0 && res.Traffic[0].Report != nil {
		AddReportEntry("timeline", ReportEntryVisibilityFailureOrVerbose, probes.Timeline(res.Traffic[0].Report, res.Events))
	}
}

// expectPassed asserts every load of a run, after all of them were
// recorded: the problems first, then the evidence (the mechanism, the
// report, the losses explained and the timeline).
func expectPassed(what string, res *scenario.Result) {
	GinkgoHelper()
	var failed []string
	for _, r := range scenario.Records(res, nil) {
		if r.Report == nil {
			failed = append(failed, r.Load+": not judged")
			continue
		}
		if !r.Outcome.Passed() {
			var evidence strings.Builder
			r.WriteText(&evidence)
			failed = append(failed, r.Load+": "+strings.Join(r.Outcome.Problems, "; ")+"\n"+evidence.String())
		}
	}
	if len(failed) > 0 {
		Fail(what + ": " + strings.Join(failed, "\n\n"))
	}
}

// deployServing creates a workload's objects in their namespace, waits
// until it is available and its Service answers, and returns the URL.
func deployServing(ctx context.Context, objs fixtures.Objects) string {
	GinkgoHelper()
	list, err := objs.Unstructured()
	Expect(err).NotTo(HaveOccurred())
	creator, err := kube.NewCreator(restConfig)
	Expect(err).NotTo(HaveOccurred())
	d := objs.Deployment
	Expect(creator.Create(ctx, d.Namespace, list)).To(Succeed())
	Expect(kube.WaitAvailable(ctx, client, d.Namespace, d.Name, timeouts.Available, timeouts)).To(Succeed())
	url, err := kube.ServiceURL(ctx, client, d.Namespace, objs.Service.Name, suiteEnv.NodeIPs[0])
	Expect(err).NotTo(HaveOccurred())
	Expect(kube.WaitServing(ctx, url, "", timeouts)).To(Succeed())
	return url
}

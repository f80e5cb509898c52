package suites_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites/framework"
)

// specNamespace creates the spec's namespace, deleted after it, with a
// recorder of what happens in it and, on failure, a dump of its pods,
// events and logs.
func specNamespace(ctx context.Context, prefix string) (string, *probes.Recorder) {
	ns, err := framework.CreateNamespace(ctx, client, prefix)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) error { return framework.DeleteNamespace(ctx, client, ns, timeouts) })
	// Registered after the namespace's deletion, so it runs first.
	DeferCleanup(func(ctx context.Context) {
		if CurrentSpecReport().Failed() {
			framework.Dump(ctx, client, ns, GinkgoWriter)
		}
	})
	rec, err := probes.Start(ctx, client, ns)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(rec.Stop)
	return ns, rec
}

// calibrate runs exactly the load the spec will judge, all of it at
// once, for a few seconds with nothing happening. Each part must be
// judged lossless by the same rule as the run itself (every request
// answered, the rate delivered with no gap, the generator on time), or
// the set-up is broken (wrong port, pods not serving, a saturated load
// generator) and the configuration is not judged.
func calibrate(ctx context.Context, cfgs ...loadgen.Config) {
	By("calibrating: the same load with nothing happening must be delivered and lose nothing")
	reports := make([]*loadgen.Report, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		cfg.Duration = calibrateFor
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			r, err := loadgen.Run(ctx, cfg)
			Expect(err).NotTo(HaveOccurred())
			reports[i] = r
		}()
	}
	wg.Wait()
	for _, r := range reports {
		AddReportEntry("calibration", ReportEntryVisibilityFailureOrVerbose, r.Summary())
		if r.Verdict != loadgen.Lossless {
			var b strings.Builder
			r.WriteTable(&b)
			Fail(fmt.Sprintf("setup broken before any disruption, so nothing was judged: calibration was %s (%s)\n%s", r.Verdict, r.Summary(), b.String()))
		}
	}
}

// judge decides a run against its expectation and records the evidence:
// the summary row, the load's summary, the losses next to what happened
// then, and the timeline. It asserts nothing: the spec does, on the
// outcome, after every row of the spec is recorded.
func judge(config, disruption, load string, r *loadgen.Report, events []probes.Event, w scenario.Window, e scenario.Expectation, took time.Duration) scenario.Outcome {
	o := scenario.Judge(r, events, w, e)
	AddReportEntry("verdict", scenario.NewRow(config, disruption, load, r, o, took.Seconds()))
	AddReportEntry("load", r.Summary())
	AddReportEntry("losses explained", ReportEntryVisibilityFailureOrVerbose, probes.Explain(r, events))
	AddReportEntry("timeline", ReportEntryVisibilityFailureOrVerbose, probes.Timeline(r, events))
	return o
}

// expectPassed asserts a judgement, printing the problems first, then
// the evidence: the mechanism, the report, the losses explained and the
// timeline.
func expectPassed(what string, o scenario.Outcome, r *loadgen.Report, events []probes.Event, e scenario.Expectation) {
	GinkgoHelper()
	if o.Passed() {
		return
	}
	Fail(what + ": " + strings.Join(o.Problems, "; ") + "\n" + evidence(r, events, e))
}

// evidence is what a failed judgement prints: the mechanism, the report,
// the losses explained and the timeline.
func evidence(r *loadgen.Report, events []probes.Event, e scenario.Expectation) string {
	var b strings.Builder
	b.WriteString("\n" + e.Why + "\n")
	if len(e.Classes) > 0 {
		b.WriteString("classes of the mechanism:\n" + e.Reasons())
	}
	r.WriteTable(&b)
	b.WriteString("\nlosses:\n" + probes.Explain(r, events) + "timeline:\n" + probes.Timeline(r, events))
	return b.String()
}

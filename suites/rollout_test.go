package suites_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/suites"
	"github.com/nodrop-dev/nodrop/suites/framework"
	. "github.com/nodrop-dev/nodrop/suites/matchers"
)

// Load settings of the rollout specs.
const (
	rolloutRate  = 1000
	calibrateFor = 3 * time.Second
	// tailRequests is how much load follows the end of a rollout, so that
	// losses from the last old pod's exit are seen.
	tailRequests = 2 * rolloutRate
	// lossTimingTolerance is how far a burst of losses may be from the
	// moment the mechanism predicts.
	lossTimingTolerance = 2 * time.Second
)

// verdictRow is one line of the run's summary table.
type verdictRow struct {
	Variant    string                `json:"variant"`
	Disruption string                `json:"disruption"`
	Mode       fixtures.Mode         `json:"mode"`
	Total      int                   `json:"total"`
	Lost       int                   `json:"lost"`
	ByClass    map[loadgen.Class]int `json:"lost_by_class"`
	Outage     float64               `json:"longest_outage_s"`
	RolloutSec float64               `json:"rollout_s"`
	Expected   fixtures.Verdict      `json:"expected"`
	Got        fixtures.Verdict      `json:"got"`
}

// rolloutTimeout bounds one rollout spec, set-up and calibration included.
var rolloutTimeout = SpecTimeout(5 * time.Minute)

// rolloutEntries is one Entry per variant and load mode under a rollout
// restart, plus every other disruption on the baseline.
func rolloutEntries() []TableEntry {
	var entries []TableEntry
	for _, v := range fixtures.Catalogue {
		for _, m := range fixtures.Modes {
			label := suites.Lossless
			if v.Expects(m) == fixtures.Lossy {
				label = suites.KnownLossy
			}
			desc := fmt.Sprintf("%s, %s: %s", v.Name, m, claim(v, m))
			entries = append(entries, Entry(desc, label, rolloutTimeout, v.Name, m, "restart"))
		}
	}
	for _, d := range []string{"image", "scale-down", "delete-pod"} {
		for _, m := range fixtures.Modes {
			entries = append(entries, Entry(fmt.Sprintf("baseline-good, %s, %s: loses no requests", m, d), suites.Lossless, rolloutTimeout, "baseline-good", m, d))
		}
	}
	return entries
}

func claim(v fixtures.Variant, m fixtures.Mode) string {
	if v.Expects(m) == fixtures.Lossy {
		return "loses requests (negative control)"
	}
	return "loses no requests"
}

func disruption(name string) framework.Disruption {
	switch name {
	case "restart":
		return framework.RolloutRestart
	case "image":
		return framework.ImageChange(suiteEnv.Images["exec-form-v2"])
	case "scale-down":
		return framework.ScaleDown
	case "delete-pod":
		return framework.DeletePod
	}
	Fail("unknown disruption " + name)
	return framework.Disruption{}
}

var _ = Describe("Rolling update under constant load", suites.Rollout, Serial, func() {
	DescribeTable("variant",
		func(ctx SpecContext, name string, mode fixtures.Mode, disruptionName string) {
			v, err := fixtures.Lookup(name)
			Expect(err).NotTo(HaveOccurred())
			dis := disruption(disruptionName)

			ns, rec := specNamespace(ctx, "rollout-"+v.Name)

			objs, err := v.Render(ns, suiteEnv.Images[v.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			url, err := framework.DeployServing(ctx, client, objs, suiteEnv.NodeIPs[0], timeouts)
			Expect(err).NotTo(HaveOccurred())

			cfg := loadgen.Config{Targets: []string{url}, Rate: rolloutRate, DisableKeepAlive: mode == fixtures.Fresh}

			calibrate(ctx, cfg, 0.95)

			By(fmt.Sprintf("%s under %d rps, %s", dis.Name, rolloutRate, mode))
			load := startLoad(ctx, cfg)
			load.waitSent(ctx, rolloutRate/2)
			d, err := client.AppsV1().Deployments(ns).Get(ctx, v.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			began := time.Now()
			Expect(dis.Apply(ctx, client, d)).To(Succeed())
			Expect(framework.WaitAvailable(ctx, client, ns, v.Name, timeouts.Rollout)).To(Succeed(), "rollout with every old pod gone")
			rolloutTook := time.Since(began)
			load.waitSent(ctx, load.sent()+tailRequests)
			r := load.stop()

			events := rec.Events()
			got := fixtures.Lossless
			if !r.Lossless() {
				got = fixtures.Lossy
			}
			row := verdictRow{Variant: v.Name, Disruption: dis.Name, Mode: mode, Total: r.Total, Lost: r.Lost, ByClass: r.LostByClass,
				RolloutSec: rolloutTook.Seconds(), Expected: v.Expects(mode), Got: got}
			if r.LongestOutage != nil {
				row.Outage = r.LongestOutage.Duration().Seconds()
			}
			AddReportEntry("verdict", row)
			AddReportEntry("load", ReportEntryVisibilityFailureOrVerbose, r.Summary())
			AddReportEntry("losses explained", ReportEntryVisibilityFailureOrVerbose, probes.Explain(r, events))
			AddReportEntry("timeline", ReportEntryVisibilityFailureOrVerbose, probes.Timeline(r, events))

			why := "\n" + v.Why + "\nlosses:\n" + probes.Explain(r, events) + "timeline:\n" + probes.Timeline(r, events)
			if v.Expects(mode) == fixtures.Lossless {
				Expect(r).To(BeLossless(), why)
				return
			}
			Expect(r).To(LoseRequests(), "a known-lossy configuration lost nothing: the harness missed it"+why)
			Expect(v.ExplainsLoss(r.DominantClass())).To(BeTrue(),
				"mostly %s losses, but the mechanism produces %v%s", r.DominantClass(), v.Expect.Classes, why)
			if at := v.Expect.LossAfterDeletion; at > 0 {
				Expect(probes.Unexplained(r, events, probes.PodDeleting, at, lossTimingTolerance)).To(BeEmpty(),
					"losses should start %s after a pod's deletion%s", at, why)
			}
		},
		rolloutEntries(),
	)
})

// runningLoad is load running in the background of a spec.
type runningLoad struct {
	cancel context.CancelFunc
	done   chan *loadgen.Report
	count  chan int
	last   int
}

func startLoad(ctx context.Context, cfg loadgen.Config) *runningLoad {
	loadCtx, cancel := context.WithCancel(ctx)
	l := &runningLoad{cancel: cancel, done: make(chan *loadgen.Report, 1), count: make(chan int, 1)}
	cfg.Progress = func(p loadgen.Progress) {
		select {
		case <-l.count:
		default:
		}
		l.count <- p.Sent
	}
	go func() {
		defer GinkgoRecover()
		r, err := loadgen.Run(loadCtx, cfg)
		Expect(err).NotTo(HaveOccurred())
		l.done <- r
	}()
	return l
}

// sent is the latest count of sent requests.
func (l *runningLoad) sent() int {
	select {
	case n := <-l.count:
		l.last = n
	default:
	}
	return l.last
}

// waitSent waits until at least n requests were sent: progress of the
// load itself, not a sleep.
func (l *runningLoad) waitSent(ctx context.Context, n int) {
	for l.last < n {
		select {
		case l.last = <-l.count:
		case <-ctx.Done():
			return
		}
	}
}

func (l *runningLoad) stop() *loadgen.Report {
	l.cancel()
	return <-l.done
}

var _ = ReportAfterSuite("verdict summary", func(report Report) {
	var rows []verdictRow
	for _, spec := range report.SpecReports {
		for _, e := range spec.ReportEntries {
			if e.Name != "verdict" {
				continue
			}
			row, ok := e.GetRawValue().(verdictRow)
			if !ok { // reported by another parallel process: only JSON is left
				Expect(json.Unmarshal([]byte(e.Value.AsJSON), &row)).To(Succeed())
			}
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return
	}
	Expect(writeSummary(rows)).To(Succeed())
})

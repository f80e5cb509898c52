package suites_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites"
	"github.com/nodrop-dev/nodrop/suites/framework"
)

// Load settings of the rollout specs.
const (
	rolloutRate  = 1000
	calibrateFor = 3 * time.Second
	// tailFor is how long load goes on after the disruption settled: the
	// data plane's lag, then a second in which nothing may be lost.
	tailFor = scenario.DataPlaneLag + time.Second
)

// rolloutTimeout bounds one rollout spec, set-up and calibration included.
var rolloutTimeout = SpecTimeout(5 * time.Minute)

// rolloutCase is one rollout spec: a catalogue variant, a load mode and a
// disruption.
type rolloutCase struct {
	variant    string
	mode       fixtures.Mode
	disruption string
}

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
			entries = append(entries, Entry(desc, label, rolloutTimeout, rolloutCase{variant: v.Name, mode: m, disruption: "restart"}))
		}
	}
	for _, d := range []string{"image", "scale-down", "delete-pod"} {
		for _, m := range fixtures.Modes {
			entries = append(entries, Entry(fmt.Sprintf("baseline-good, %s, %s: loses no requests", m, d), suites.Lossless, rolloutTimeout,
				rolloutCase{variant: "baseline-good", mode: m, disruption: d}))
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

// expectation is what a rollout case must show: the variant's claim and,
// for an image change, v1 before and only v2 after.
func (tc rolloutCase) expectation(v fixtures.Variant) scenario.Expectation {
	e := v.Expectation(tc.mode)
	if tc.disruption == "image" {
		e.Versions = &scenario.VersionChange{Before: "v1", After: "v2"}
	}
	return e
}

var _ = Describe("Rolling update under constant load", suites.Rollout, Serial, func() {
	DescribeTable("variant",
		func(ctx SpecContext, tc rolloutCase) {
			v, err := fixtures.Lookup(tc.variant)
			Expect(err).NotTo(HaveOccurred())
			dis := disruption(tc.disruption)

			ns, rec := specNamespace(ctx, "rollout-"+v.Name)

			objs, err := v.Render(ns, suiteEnv.Images[v.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			url, err := framework.DeployServing(ctx, client, objs, suiteEnv.NodeIPs[0], timeouts)
			Expect(err).NotTo(HaveOccurred())

			cfg := loadgen.Config{Targets: []string{url}, Rate: rolloutRate, DisableKeepAlive: tc.mode == fixtures.Fresh}
			if v.Load != nil {
				cfg.Rate, cfg.Timeout = v.Load.Rate, v.Load.Timeout
			}
			calibrate(ctx, cfg)

			By(fmt.Sprintf("%s under %d rps, %s", dis.Name, cfg.Rate, tc.mode))
			load := startLoad(ctx, cfg)
			load.waitSent(ctx, cfg.Rate/2)
			d, err := client.AppsV1().Deployments(ns).Get(ctx, v.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			w := scenario.Window{Trigger: time.Now()}
			rec.Record(probes.Event{At: w.Trigger, Kind: probes.Disruption, Detail: dis.Name})
			Expect(dis.Apply(ctx, client, d)).To(Succeed())
			Expect(framework.WaitAvailable(ctx, client, ns, v.Name, timeouts.Rollout)).To(Succeed(), "rollout with every old pod gone")
			w.Settled = time.Now()
			// Then the tail: kube-proxy catches up (scenario.DataPlaneLag),
			// losses from the last old pod's exit show, and after that
			// nothing may be lost.
			load.waitSent(ctx, load.sent()+int(tailFor.Seconds()*float64(cfg.Rate)))
			// The window ends when sending stops; what was in flight then
			// still finishes and is judged.
			w.End = time.Now()
			r := load.stop()

			e, events := tc.expectation(v), rec.Events()
			o := judge(v.Name, dis.Name, string(tc.mode), r, events, w, e, w.Settled.Sub(w.Trigger))
			expectPassed(v.Name, o, r, events, e)
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

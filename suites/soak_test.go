package suites_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/suites"
)

// soakFor is the null run's length: long enough for a slow leak in the
// generator, or a rare false loss, to show.
const soakFor = 10 * time.Minute

// The null run: the baseline under constant load with nothing happening
// must lose nothing, keep its rate, and the generator's memory must stay
// flat (the report keeps a bounded summary, not every request).
var _ = Describe("Ten minutes of load with nothing happening", suites.Slow, Serial, func() {
	DescribeTable("null run",
		func(ctx SpecContext, mode fixtures.Mode) {
			ns, _ := specNamespace(ctx, "soak", kube.PodSecurityRestricted)
			w := fixtures.Baseline("soak")
			objs, err := w.Render(ns, suiteEnv.Images[w.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			url := deployServing(ctx, objs)
			Expect(err).NotTo(HaveOccurred())

			var rssAt1 int64
			cfg := mode.Load().Apply(loadgen.Config{Targets: []string{url}, Rate: fixtures.RolloutRate, Duration: soakFor,
				Witness: stallWitness, OnStall: stallTrace.Stalled})
			cfg.Progress = func(p loadgen.Progress) {
				if rssAt1 == 0 && p.Elapsed >= time.Minute {
					rssAt1 = rssBytes()
				}
			}
			r, err := loadgen.Run(ctx, cfg)
			Expect(err).NotTo(HaveOccurred())
			rssAt10 := rssBytes()
			g := r.Generator
			line := fmt.Sprintf("%s: %s; %.1f/s; generator p99 %.1fms late, %d stalls of 20ms or more (%d its own, %d the machine's), longest %.0fms; nodrop %.0f%% of a CPU, machine CPU pressure %.0f%%; RSS %.1f MiB at 1 min, %.1f MiB at %s",
				mode, r.Summary(), r.RateAchieved, g.SendLag.P99, g.StallCount, g.OwnStalls, g.MachineStalls, g.MaxStallMs, 100*g.CPU, 100*g.CPUPressure, mib(rssAt1), mib(rssAt10), soakFor)
			AddReportEntry("null run", line)
			fmt.Fprintln(GinkgoWriter, line)
			Expect(r.Verdict).To(Equal(loadgen.Lossless), "%s", r.Summary())
			Expect(r.RateAchieved).To(BeNumerically("~", fixtures.RolloutRate, fixtures.RolloutRate/100), "rate within 1 %%")
			Expect(rssAt10-rssAt1).To(BeNumerically("<", 32<<20), "the generator's memory grew by %.1f MiB", mib(rssAt10-rssAt1))
		},
		Entry("keep-alive loses nothing and stays flat", fixtures.KeepAlive, SpecTimeout(soakFor+5*time.Minute)),
		Entry("fresh connections lose nothing and stay flat", fixtures.Fresh, SpecTimeout(soakFor+5*time.Minute)),
	)
})

// rssBytes is this process's resident memory.
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	Expect(err).NotTo(HaveOccurred())
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			Expect(err).NotTo(HaveOccurred())
			return kb << 10
		}
	}
	Fail("no VmRSS in /proc/self/status")
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

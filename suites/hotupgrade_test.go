package suites_test

import (
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/suites"
)

// hotTimeout bounds one hot-upgrade spec, set-up and calibration
// included, with its attempts and the waits for quiet between them (up
// to 90 s each), as rolloutTimeout does: a spec whose first runs were not
// judged must not run out of time before its attempts do.
var hotTimeout = SpecTimeout(10 * time.Minute)

// nginxEntries are the catalogue's nginx cases (fixtures.NginxCases).
func nginxEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.NginxCases {
		entries = append(entries, Entry(c.Claim, verdictLabel(c.Load.Expect.Verdict == fixtures.Lossy), hotTimeout, c))
	}
	return entries
}

// Not Serial, as the rollout specs: a namespace, Service and load of their own.
var _ = Describe("nginx binary upgrade in a running pod, under load", suites.HotUpgrade, func() {
	DescribeTable("nginx",
		func(ctx SpecContext, c fixtures.NginxCase) {
			s, err := c.Scenario(suiteEnv.Images)
			Expect(err).NotTo(HaveOccurred())
			By(fmt.Sprintf("running %s in the container under %d rps, %s", strings.Join(c.Command, " "), fixtures.HotRate, c.Load.Load))
			res, err := s.RunUntilJudged(ctx, scenarioEnv(), attempts)
			record(res)
			Expect(err).NotTo(HaveOccurred())
			// The case's claims on v2 and restarts are checks of the run.
			expectPassed(c.ImageVariant, res)
		},
		nginxEntries(),
	)
})

// sidecarEntries are the catalogue's SidecarSet cases (fixtures.SidecarCases).
func sidecarEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.SidecarCases {
		entries = append(entries, Entry(c.Claim, verdictLabel(c.HTTP.Verdict == fixtures.Lossy || c.RPC.Verdict == fixtures.Lossy), hotTimeout, c))
	}
	return entries
}

// Serial: Kruise's controller and webhook serve every SidecarSet.
var _ = Describe("OpenKruise SidecarSet upgrade of a proxy in front of the app, under long-lived load", suites.HotUpgrade, Serial, func() {
	DescribeTable("sidecarset",
		func(ctx SpecContext, c fixtures.SidecarCase) {
			s, err := c.Scenario(suiteEnv.Images)
			Expect(err).NotTo(HaveOccurred())
			By(fmt.Sprintf("%s of the proxy to v2 under long-lived HTTP and RPC load", c.UpgradeType))
			res, err := s.RunUntilJudged(ctx, scenarioEnv(), attempts)
			record(res)
			Expect(err).NotTo(HaveOccurred())
			AddReportEntry("upgrade", fmt.Sprintf("%s took %s; pod or endpoint not ready %d times", c.UpgradeType, res.Took.Round(time.Millisecond), fixtures.NotReadyDuring(res)))
			// StayReady is a check of the run.
			expectPassed(c.Config(), res)
		},
		sidecarEntries(),
	)
})

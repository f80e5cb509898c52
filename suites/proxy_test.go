package suites_test

import (
	"fmt"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/suites"
)

// proxyEntries are fixtures.ProxyCases, one Entry each.
func proxyEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.ProxyCases() {
		args := caseDecorators(c.Expect.Verdict[c.Mode] == fixtures.Lossy, c.Extended, rolloutTimeout)
		if c.Restart && !c.Proxy.LB() {
			// The ingress controller is every run's.
			args = append(args, Serial)
		}
		desc := fmt.Sprintf("%s, %s: %s", c.Name(), c.Mode, strings.TrimSuffix(c.Why, "."))
		entries = append(entries, Entry(desc, append(args, c)...))
	}
	return entries
}

// grayEntries are fixtures.GrayCases, one Entry each.
func grayEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.GrayCases() {
		args := caseDecorators(c.Expect.Verdict[c.Mode] == fixtures.Lossy, false, rolloutTimeout)
		desc := fmt.Sprintf("%s, %s: %s", c.Name(), c.Mode, strings.TrimSuffix(c.Why, "."))
		entries = append(entries, Entry(desc, append(args, c)...))
	}
	return entries
}

// Each case in its own namespace, like the rollout specs: the proxy is
// the case's own.
var _ = Describe("A rolling update behind a proxy, under load", suites.Proxy, func() {
	DescribeTable("proxy",
		func(ctx SpecContext, c fixtures.ProxyCase) {
			s, err := c.Scenario(suiteEnv.Images)
			Expect(err).NotTo(HaveOccurred())
			By(fmt.Sprintf("%s, %s load at %d rps: %s", c.Name(), c.Mode, s.Traffic[0].Config.Rate, s.Disruption.Name))
			res, err := fitted(s).RunUntilJudged(ctx, scenarioEnv(), attempts)
			record(res)
			Expect(err).NotTo(HaveOccurred())
			expectPassed(c.Name(), res)
		},
		proxyEntries(),
	)
})

// The source documents' nginx gray release, and its twin that stops v1
// too early.
var _ = Describe("An nginx gray release under load", suites.Proxy, func() {
	DescribeTable("gray release",
		func(ctx SpecContext, c fixtures.GrayCase) {
			s, err := c.Scenario(suiteEnv.Images)
			Expect(err).NotTo(HaveOccurred())
			By(fmt.Sprintf("%s, %s load at %d rps: %s", c.Name(), c.Mode, s.Traffic[0].Config.Rate, s.Disruption.Name))
			res, err := fitted(s).RunUntilJudged(ctx, scenarioEnv(), attempts)
			record(res)
			Expect(err).NotTo(HaveOccurred())
			expectPassed(c.Name(), res)
		},
		grayEntries(),
	)
})

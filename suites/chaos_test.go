package suites_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"

	sources "github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites"
)

// multiNode is the three-node cluster the chaos specs that need nodes
// make (and delete after them).
const multiNode = "nodrop-multi"

// chaosEntries are fixtures.ChaosCases that need several nodes (nodes)
// or do not, one Entry each.
func chaosEntries(nodes bool) []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.ChaosCases() {
		if c.Nodes != nodes {
			continue
		}
		args := caseDecorators(c.Expect.Verdict[c.Mode] == fixtures.Lossy, c.Extended, rolloutTimeout)
		at := c.At
		if at == "" {
			at = "pod-deleting"
		}
		desc := fmt.Sprintf("%s, %s, %s at %s: %s", c.Variant, c.Mode, c.Fault, at, strings.TrimSuffix(c.Why, "."))
		entries = append(entries, Entry(desc, append(args, c)...))
	}
	return entries
}

// runChaos runs one case on the cluster env names and checks that
// nothing is left stopped, paused or cordoned after it.
func runChaos(ctx SpecContext, env scenario.Env, name string, c fixtures.ChaosCase) {
	s, err := c.Scenario(suiteEnv.Images)
	Expect(err).NotTo(HaveOccurred())
	By(fmt.Sprintf("%s, %s load at %d rps: %s", c.Variant, c.Mode, s.Traffic[0].Config.Rate, s.Disruption.Name))
	// Whatever happens, nothing is left stopped, paused or cordoned.
	DeferCleanup(func(ctx context.Context) {
		resumed, err := chaos.Resume(ctx, cluster.Shell{Cluster: name})
		Expect(err).NotTo(HaveOccurred())
		Expect(resumed).To(BeEmpty(), "still stopped after the run")
		uncordoned, err := chaos.Uncordon(ctx, env.Client)
		Expect(err).NotTo(HaveOccurred())
		Expect(uncordoned).To(BeEmpty(), "still cordoned after the run")
	})
	res, err := s.RunUntilJudged(ctx, env, attempts)
	record(res)
	Expect(err).NotTo(HaveOccurred())
	expectPassed(c.Variant, res)
}

// Serial: a fault touches what every run shares (kube-proxy on the node).
var _ = Describe("Chaos during a rolling update under load", suites.Chaos, suites.Disruptive, Serial, func() {
	DescribeTable("fault",
		func(ctx SpecContext, c fixtures.ChaosCase) { runChaos(ctx, scenarioEnv(), suiteEnv.Name, c) },
		chaosEntries(false),
	)
})

// Ordered: the three-node cluster is made once, before these specs, and
// deleted after them.
var _ = Describe("Chaos across nodes, on a three-node cluster", suites.Chaos, suites.Disruptive, Serial, Ordered, func() {
	var env scenario.Env
	BeforeAll(func(ctx SpecContext) {
		config := filepath.Join(GinkgoT().TempDir(), "kind-config-multinode.yaml")
		Expect(os.WriteFile(config, sources.MultiNodeKindConfig, 0o644)).To(Succeed())
		log := progress.New(GinkgoWriter, false)
		multi, err := cluster.Up(ctx, cluster.Options{Name: multiNode, ConfigPath: config, NodeImage: suiteEnv.NodeImage, StateDir: suiteEnv.StateDir, Recreate: true, Log: log})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cluster.Down(ctx, multi.Name, suiteEnv.StateDir, log)).To(Succeed())
		}, NodeTimeout(2*time.Minute))
		Expect(cluster.LoadImages(ctx, multi.Name, slices.Sorted(maps.Values(suiteEnv.Images)), log)).To(Succeed())
		rc, err := clientcmd.BuildConfigFromFlags("", multi.Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		env = scenario.Env{
			Client: multi.Client, REST: rc, NodeIP: multi.NodeIPs[0], Timeouts: timeouts,
			Log: progress.New(GinkgoWriter, false), Dump: GinkgoWriter,
			Nodes: cluster.Shell{Cluster: multi.Name}, HelperProgram: helperProgram(),
		}
	}, NodeTimeout(8*time.Minute))

	DescribeTable("fault",
		func(ctx SpecContext, c fixtures.ChaosCase) { runChaos(ctx, env, multiNode, c) },
		chaosEntries(true),
	)
})

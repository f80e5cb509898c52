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
		// The first spec of the three-node container also runs its
		// BeforeAll (the cluster made, images loaded), which a
		// SpecTimeout would count: their runs get the time on their own.
		var timeout any = rolloutTimeout
		if nodes {
			timeout = NodeTimeout(rolloutTimeout)
		}
		args := caseDecorators(c.Expect.Verdict[c.Mode] == fixtures.Lossy, c.Extended, timeout)
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
	res, err := fitted(s).RunUntilJudged(ctx, env, attempts)
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

// nodeCaseImages are the images the three-node cases' pods run: only
// those are loaded into its nodes (every image took two minutes).
func nodeCaseImages() []string {
	seen := map[string]bool{}
	for _, c := range fixtures.ChaosCases() {
		if !c.Nodes {
			continue
		}
		s, err := c.Scenario(suiteEnv.Images)
		Expect(err).NotTo(HaveOccurred())
		for _, o := range s.Objects {
			for _, img := range imagesIn(o.Object) {
				seen[img] = true
			}
		}
	}
	Expect(seen).NotTo(BeEmpty(), "no images in the three-node cases")
	return slices.Sorted(maps.Keys(seen))
}

// imagesIn lists the values of every "image" field in an object.
func imagesIn(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "image" {
				out = append(out, s)
				continue
			}
			out = append(out, imagesIn(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, imagesIn(x)...)
		}
	}
	return out
}

// Ordered: the three-node cluster is made once, before these specs, and
// deleted after them.
var _ = Describe("Chaos across nodes, on a three-node cluster", suites.Chaos, suites.Disruptive, Serial, Ordered, func() {
	var env scenario.Env
	BeforeAll(func(ctx SpecContext) {
		config := filepath.Join(GinkgoT().TempDir(), "kind-config-multinode.yaml")
		Expect(os.WriteFile(config, sources.MultiNodeKindConfig, 0o644)).To(Succeed())
		log := progress.New(GinkgoWriter, false)
		multi, err := cluster.Up(ctx, cluster.Options{Name: multiNode, ConfigPath: config, NodeImage: suiteEnv.NodeImage, StateDir: suiteEnv.StateDir, Recreate: true, Log: log, Program: helperProgram()})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cluster.Down(ctx, multi.Name, suiteEnv.StateDir, log)).To(Succeed())
		}, NodeTimeout(2*time.Minute))
		Expect(cluster.LoadImages(ctx, multi.Name, nodeCaseImages(), log)).To(Succeed())
		rc, err := clientcmd.BuildConfigFromFlags("", multi.Kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		env = newScenarioEnv(rc, scenario.Env{NodeIP: multi.NodeIPs[0], Nodes: cluster.Shell{Cluster: multi.Name}})
	}, NodeTimeout(8*time.Minute))

	DescribeTable("fault",
		func(ctx SpecContext, c fixtures.ChaosCase) { runChaos(ctx, env, multiNode, c) },
		chaosEntries(true),
	)
})

package suites_test

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/suites"
	"github.com/nodrop-dev/nodrop/suites/framework"
	. "github.com/nodrop-dev/nodrop/suites/matchers"
)

var _ = Describe("The kind cluster", suites.Cluster, func() {
	It("serves the sample app through its Service without losing a request", func(ctx SpecContext) {
		ns, err := framework.CreateNamespace(ctx, client, "cluster")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx context.Context) error { return framework.DeleteNamespace(ctx, client, ns, timeouts) })

		w := fixtures.Baseline("hello")
		objs, err := w.Render(ns, suiteEnv.Images[w.ImageVariant])
		Expect(err).NotTo(HaveOccurred())
		url, err := framework.DeployServing(ctx, client, objs, suiteEnv.NodeIPs[0], timeouts)
		Expect(err).NotTo(HaveOccurred())

		// Fresh connections, so kube-proxy spreads them over both replicas.
		r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Rate: 500, Duration: 3 * time.Second, DisableKeepAlive: true})
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("load through the Service", r.Summary())
		Expect(r).To(BeLossless())
		Expect(r.ByPod).To(HaveLen(2), "both replicas serve")
	}, SpecTimeout(5*time.Minute))
})

var _ = Describe("nodrop cluster up and down", suites.Cluster, suites.Disruptive, Serial, Ordered, func() {
	const name = "nodrop-lifecycle"
	var opts cluster.Options

	BeforeAll(func() {
		opts = cluster.Options{Name: name, ConfigPath: suiteEnv.ConfigPath, NodeImage: suiteEnv.NodeImage, StateDir: suiteEnv.StateDir, Log: progress.New(GinkgoWriter, false)}
		DeferCleanup(func(ctx context.Context) error { return cluster.Down(ctx, name, suiteEnv.StateDir, nil) })
	})

	It("creates a cluster, then reuses it when asked for the same one", func(ctx SpecContext) {
		c, err := cluster.Up(ctx, opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Reused).To(BeFalse())
		again, err := cluster.Up(ctx, opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(again.Reused).To(BeTrue(), "same config and node image")
	}, SpecTimeout(5*time.Minute))

	It("refuses a cluster of the same name made from another config, and leaves it alone", func(ctx SpecContext) {
		raw, err := os.ReadFile(suiteEnv.ConfigPath)
		Expect(err).NotTo(HaveOccurred())
		other := filepath.Join(GinkgoT().TempDir(), "kind-config.yaml")
		Expect(os.WriteFile(other, append(raw, []byte("# another config\n")...), 0o644)).To(Succeed())
		o := opts
		o.ConfigPath = other
		_, err = cluster.Up(ctx, o)
		Expect(err).To(MatchError(cluster.ErrBadInput))
		Expect(err.Error()).To(ContainSubstring("another kind config"))
		Expect(cluster.Exists(name)).To(BeTrue())
	}, SpecTimeout(time.Minute))

	It("deletes the cluster and leaves no containers or networks behind", func(ctx SpecContext) {
		Expect(cluster.Down(ctx, name, suiteEnv.StateDir, nil)).To(Succeed())
		Expect(cluster.Exists(name)).To(BeFalse())
		Expect(cluster.Leftovers(ctx, name)).To(BeEmpty())
	}, SpecTimeout(2*time.Minute))
})

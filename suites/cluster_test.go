package suites_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/fixtures"
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
		Expect(framework.Deploy(ctx, client, objs)).To(Succeed())
		Expect(framework.WaitAvailable(ctx, client, ns, w.Name, timeouts.Available)).To(Succeed())
		url, err := framework.ServiceURL(ctx, client, ns, w.Name, suiteEnv.NodeIPs[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(framework.WaitServing(ctx, url, timeouts.Serving)).To(Succeed())

		// Fresh connections, so kube-proxy spreads them over both replicas.
		r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Rate: 500, Duration: 3 * time.Second, DisableKeepAlive: true})
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("load through the Service", r.Summary())
		Expect(r).To(BeLossless())
		Expect(r.ByPod).To(HaveLen(2), "both replicas serve")
	}, SpecTimeout(5*time.Minute))
})

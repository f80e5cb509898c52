package suites_test

import (
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/suites"
	. "github.com/nodrop-dev/nodrop/suites/matchers"
)

var _ = Describe("The kind cluster", suites.Cluster, func() {
	It("serves the sample app through its Service without losing a request", func(ctx SpecContext) {
		ns, err := kube.CreateNamespace(ctx, client, "cluster", kube.PodSecurityRestricted)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx context.Context) error { return kube.DeleteNamespace(ctx, client, ns, timeouts) })

		w := fixtures.Baseline("hello")
		objs, err := w.Render(ns, suiteEnv.Images[w.ImageVariant])
		Expect(err).NotTo(HaveOccurred())
		url := deployServing(ctx, objs)
		Expect(err).NotTo(HaveOccurred())

		// Fresh connections, so kube-proxy spreads them over both replicas.
		r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Rate: 500, Duration: 3 * time.Second, DisableKeepAlive: true})
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("load through the Service", r.Summary())
		Expect(r).To(BeLossless())
		Expect(r.ByPod).To(HaveLen(2), "both replicas serve")
	}, SpecTimeout(5*time.Minute))
})

// The load path (host → node address on the Docker network → NodePort →
// kube-proxy → pod) must deliver each failure a pod produces as itself:
// otherwise a verdict's classes would describe the path, not the pod.
var _ = Describe("The load path", suites.Cluster, func() {
	It("delivers a pod's reset, EOF and refusal to the client unchanged", func(ctx SpecContext) {
		ns, err := kube.CreateNamespace(ctx, client, "path", kube.PodSecurityRestricted)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx context.Context) error { return kube.DeleteNamespace(ctx, client, ns, timeouts) })
		w := fixtures.Baseline("path")
		objs, err := w.Render(ns, suiteEnv.Images[w.ImageVariant])
		Expect(err).NotTo(HaveOccurred())
		// A second port of the same Service leads to a pod port nothing
		// listens on. kube-proxy programs both ports in the same sync, so
		// once the first one serves, a refusal on the second comes from
		// the pod, not from a node port without rules.
		objs.Service.Spec.Ports = append(objs.Service.Spec.Ports, corev1.ServicePort{Name: "closed", Port: 81, TargetPort: intstr.FromInt32(9999)})
		url := deployServing(ctx, objs)
		Expect(err).NotTo(HaveOccurred())
		closedURL, err := kube.ServicePortURL(ctx, client, ns, w.Name, "closed", suiteEnv.NodeIPs[0])
		Expect(err).NotTo(HaveOccurred())

		for target, class := range map[string]loadgen.Class{
			url + "misbehave/reset": loadgen.Reset,
			url + "misbehave/close": loadgen.EOF,
			closedURL:               loadgen.Refused,
		} {
			r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{target}, Rate: 100, Duration: time.Second})
			Expect(err).NotTo(HaveOccurred())
			AddReportEntry(target, r.Summary())
			Expect(r.Total).To(BeNumerically(">", 0))
			Expect(r.LostByClass[class]).To(Equal(r.Total), "%s: every request must arrive as %s: %s", target, class, r.Summary())
		}
	}, SpecTimeout(5*time.Minute))
})

var _ = Describe("nodrop cluster up and down", suites.Cluster, suites.Disruptive, Serial, Ordered, func() {
	const name = "nodrop-lifecycle"
	var opts cluster.Options

	BeforeAll(func() {
		opts = cluster.Options{Name: name, ConfigPath: suiteEnv.ConfigPath, NodeImage: suiteEnv.NodeImage, StateDir: suiteEnv.StateDir, Log: progress.New(GinkgoWriter, false), Program: helperProgram()}
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
		raw, _, err := cluster.LoadConfig(suiteEnv.ConfigPath)
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

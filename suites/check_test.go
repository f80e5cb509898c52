package suites_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	sources "github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/suites"
)

// checkRun is what the specs read of `nodrop check --json`.
type checkRun struct {
	Load    string `json:"load"`
	Verdict string `json:"verdict"`
	Error   string `json:"error"`
	Report  struct {
		Total       int            `json:"total"`
		Lost        int            `json:"lost"`
		LostByClass map[string]int `json:"lost_by_class"`
		Losses      []struct {
			Class     string `json:"class"`
			Generator string `json:"generator"`
		} `json:"losses"`
		Generators []struct {
			Name    string `json:"name"`
			Sent    int    `json:"sent"`
			Problem string `json:"problem"`
		} `json:"generators"`
	} `json:"report"`
	Added  []string `json:"added"`
	Advice []string `json:"advice"`
}

// The user's path: the built binary, on manifests under testdata/check
// written as a user would write them (not rendered by fixtures), with
// images tagged as the user's own and loaded from the local engine.
var _ = Describe("nodrop check on a user's manifests", suites.Check, Serial, Ordered, func() {
	// bin runs in userDir, outside the source tree, as a released binary
	// would: it must need nothing from the tree.
	var bin, testdata, userDir string

	BeforeAll(func(ctx SpecContext) {
		userDir = GinkgoT().TempDir()
		bin = filepath.Join(GinkgoT().TempDir(), "nodrop")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/nodrop")
		build.Dir = suiteEnv.Root
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "building nodrop: %s", out)
		testdata = filepath.Join(suiteEnv.Root, "suites", "testdata", "check")
		// The user's images: the sample app as "shop:1.0" (and as
		// "greeter:1.0" and "storefront:1.0"), nodrop's proxy as
		// "edge-proxy:1.0", Debian's nginx as "webserver:stock".
		for ref, src := range map[string]string{"shop:1.0": suiteEnv.Images["exec-form"], "greeter:1.0": suiteEnv.Images["exec-form"], "storefront:1.0": suiteEnv.Images["exec-form"], "edge-proxy:1.0": suiteEnv.Images[fixtures.SidecarImage], "webserver:stock": images.BaseRef()} {
			out, err := exec.CommandContext(ctx, "docker", "tag", src, ref).CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "docker tag %s %s: %s", src, ref, out)
		}
	}, NodeTimeout(5*time.Minute))

	nodrop := func(ctx context.Context, args ...string) (code int, stdout, stderr string) {
		if len(args) > 0 && args[0] == "check" {
			// As many attempts as the suite's own specs allow a run that
			// ends not judged (attempts); each one is in the output.
			args = append(args, "--attempts", strconv.Itoa(attempts))
		}
		var out, errb bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = userDir
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		GinkgoWriter.Printf("$ nodrop %s\n%s%s", strings.Join(args, " "), errb.String(), out.String())
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			Fail("running nodrop: " + err.Error())
		}
		return code, out.String(), errb.String()
	}
	// untilRollout starts the built binary with args and waits until its
	// first run is rolling out under load (with its faults, if any: "rollout
	// restart, kube-proxy paused 2m0s under 1000 rps"); the process is
	// killed at the end of the spec whatever happens.
	untilRollout := func(ctx context.Context, args ...string) (*exec.Cmd, *lockedBuffer) {
		cmd := exec.CommandContext(ctx, bin, args...)
		errb := &lockedBuffer{}
		cmd.Stderr = errb
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() { cmd.Process.Kill() })
		Eventually(errb.String).WithContext(ctx).WithTimeout(2*time.Minute).Should(MatchRegexp(`rollout restart(, [^\n]*)? under \d+ rps`), "the run reaches its rollout")
		return cmd, errb
	}
	// interrupt sends SIGINT to a command untilRollout started and
	// asserts it ends as interrupted: exit 3 (not judged), and says so.
	interrupt := func(cmd *exec.Cmd, errb *lockedBuffer) {
		GinkgoHelper()
		Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
		err := cmd.Wait()
		GinkgoWriter.Print(errb.String())
		var ee *exec.ExitError
		Expect(errors.As(err, &ee)).To(BeTrue(), "an interrupted run must not exit 0")
		Expect(ee.ExitCode()).To(Equal(3), "not judged")
		Expect(errb.String()).To(ContainSubstring("interrupted"))
	}
	runs := func(stdout string) []checkRun {
		var rs []checkRun
		Expect(json.Unmarshal([]byte(stdout), &rs)).To(Succeed(), "check --json prints a JSON array:\n%s", stdout)
		return rs
	}

	It("brings its cluster up from a directory outside the source tree: the image sources and kind config are built in", func(ctx SpecContext) {
		code, _, errOut := nodrop(ctx, "cluster", "up", "--name", suiteEnv.Name, "--image", suiteEnv.NodeImage)
		Expect(code).To(Equal(0), "cluster up: %s", errOut)
		Expect(errOut).To(ContainSubstring("reusing cluster"), "the suite's cluster, made from the same built-in config and node image")
		code, out, _ := nodrop(ctx, "images", "list", "--cluster", suiteEnv.Name)
		Expect(code).To(Equal(0))
		for _, ref := range suiteEnv.Images {
			Expect(out).To(ContainSubstring(ref), "the images built from the embedded sources are the suite's, tag for tag")
		}
		code, out, _ = nodrop(ctx, "cluster", "status", "--name", suiteEnv.Name)
		Expect(code).To(Equal(0))
		Expect(out).To(MatchRegexp(`OpenKruise +nodrop/kruise-manager:\S+ \(1 of 1 available\)`), "the suite installs OpenKruise")
		Expect(out).To(MatchRegexp(`ingress +nodrop/traefik:v3\.6\.12-[0-9a-f]{12} \(1 of 1 available\)`), "and Traefik")
	}, SpecTimeout(5*time.Minute))

	It("sends the load through the cluster's ingress controller with --via ingress, adding an Ingress and nothing else (exit 0)", func(ctx SpecContext) {
		code, out, errOut := nodrop(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--load-image", "shop:1.0",
			"--cluster", suiteEnv.Name, "--via", "ingress", "--mode", "fresh", "--rate", strconv.Itoa(fixtures.IngressRate), "--json")
		Expect(code).To(Equal(0), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(1))
		Expect(rs[0].Verdict).To(Equal("lossless"))
		Expect(rs[0].Added).To(ConsistOf(MatchRegexp(`^Ingress shop-nodrop \(class nodrop-traefik, host nodrop-check-\w+\.nodrop\.test → Service shop port \d+\)`)), "an Ingress, no NodePort Service")
		Expect(errOut).To(ContainSubstring("through the cluster's ingress controller (Traefik v3.6.12)"))
		Expect(errOut).To(MatchRegexp(`ingress: Traefik v3\.6\.12 routes to shop-`), "the timeline follows Traefik")
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty())
	}, SpecTimeout(4*time.Minute))

	It("checks README's example as printed: the shop, built into an image of its own, loses no request (exit 0)", func(ctx SpecContext) {
		// The commands README gives, from the source tree's root.
		for _, c := range [][]string{
			{"go", "build", "-o", "examples/shop/shop", "./examples/shop"},
			{"docker", "build", "-t", "myshop:1.0", "examples/shop"},
		} {
			cmd := exec.CommandContext(ctx, c[0], c[1:]...)
			cmd.Dir = suiteEnv.Root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "DOCKER_BUILDKIT=0")
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), "%v: %s", c, out)
		}
		code, out, errOut := nodrop(ctx, "check", "-f", filepath.Join(suiteEnv.Root, "examples", "shop", "deploy.yaml"), "--load-image", "myshop:1.0",
			"--cluster", suiteEnv.Name, "--mode", "keepalive", "--json")
		Expect(code).To(Equal(0), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(1))
		Expect(rs[0].Verdict).To(Equal("lossless"))
		Expect(rs[0].Report.Total).To(BeNumerically(">", 10000), "the tail and rollout carry load")

		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(6*time.Minute))

	It("runs the CI recipe as a CI job would: the shop's Helm chart, rendered as helm template does, loses no request (exit 0, JUnit and summary written)", func(ctx SpecContext) {
		// examples/ci/nodrop-check.sh, as github-actions.yml calls it,
		// on this cluster; the shop's image was built by the spec above.
		out := GinkgoT().TempDir()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join("examples", "ci", "nodrop-check.sh"))
		cmd.Dir = suiteEnv.Root
		summary := filepath.Join(GinkgoT().TempDir(), "step-summary.md")
		cmd.Env = append(os.Environ(), "NODROP="+bin, "CHART=examples/shop/chart", "APP_IMAGE=myshop:1.0", "CLUSTER="+suiteEnv.Name,
			"MODE=keepalive", "OUT="+out, "CHECK_ARGS=--attempts "+strconv.Itoa(attempts), "GITHUB_STEP_SUMMARY="+summary)
		stdout, err := cmd.CombinedOutput()
		GinkgoWriter.Printf("$ bash examples/ci/nodrop-check.sh\n%s", stdout)
		Expect(err).NotTo(HaveOccurred(), "the recipe exits 0 on a lossless chart")
		junit, err := os.ReadFile(filepath.Join(out, "junit.xml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(junit)).To(ContainSubstring("<testcase"), "one test case per run")
		Expect(string(junit)).NotTo(ContainSubstring("<failure"))
		page, err := os.ReadFile(summary)
		Expect(err).NotTo(HaveOccurred(), "the verdict table is the job's summary")
		Expect(string(page)).To(ContainSubstring("lossless"))
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(8*time.Minute))

	It("finds nothing to flag in a careful manifest, and its rollout loses no request in either mode (exit 0)", func(ctx SpecContext) {
		code, out, _ := nodrop(ctx, "lint", "-f", filepath.Join(testdata, "shop.yaml"))
		Expect(code).To(Equal(0), "lint: %s", out)

		start := time.Now()
		code, out, errOut := nodrop(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--load-image", "shop:1.0",
			"--cluster", suiteEnv.Name, "--json")
		AddReportEntry("check shop, both modes", time.Since(start).Round(time.Second).String())
		Expect(code).To(Equal(0), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(2), "one run per load mode")
		for _, r := range rs {
			Expect(r.Verdict).To(Equal("lossless"), "%s", r.Load)
			Expect(r.Report.Lost).To(BeZero(), "%s: a lossless verdict lost nothing", r.Load)
			Expect(r.Report.Total).To(BeNumerically(">", 10000), "the tail and rollout carry load")
			Expect(r.Added).To(ConsistOf(ContainSubstring("Service shop-nodrop (NodePort")), "the user's ClusterIP Service is left alone; a NodePort one is added beside it")
		}
		Expect(errOut).To(ContainSubstring("nodrop adds Service shop-nodrop"), "check says what it adds")
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(6*time.Minute))

	It("flags a gRPC service with a TCP probe and no preStop in gRPC's terms, and the rollout under gRPC load confirms it: refused RPCs, advice that names GracefulStop (exit 1)", func(ctx SpecContext) {
		manifest := filepath.Join(testdata, "greeter.yaml")
		code, out, errOut := nodrop(ctx, "check", "-f", manifest, "--load-image", "greeter:1.0", "--cluster", suiteEnv.Name,
			"--protocol", "grpc", "--rate", "500", "--json")
		Expect(code).To(Equal(1), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(1))
		r := rs[0]
		Expect(r.Load).To(Equal(string(fixtures.LongLivedGRPC)))
		Expect(r.Verdict).To(Equal("lossy"))
		Expect(r.Report.LostByClass["refused"]+r.Report.LostByClass["http_5xx"]).To(BeNumerically(">", 0),
			"clients moved off the GOAWAY land on the closed listener (refused), or the dying pod's health service answers NOT_SERVING")
		for class, n := range r.Report.LostByClass {
			if n > 0 {
				Expect([]string{"refused", "http_5xx", "timeout"}).To(ContainElement(class), "GracefulStop cuts no RPC")
			}
		}
		Expect(strings.Join(r.Advice, "\n")).To(ContainSubstring("GracefulStop"), "the advice speaks gRPC")
		Expect(errOut).To(ContainSubstring("TCP readiness probe on a gRPC server"), "the review speaks gRPC")
		Expect(errOut).To(ContainSubstring("measured by nodrop's variant grpc-no-prestop"))
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(6*time.Minute))

	It("flags a proxy sidecar that has no preStop or probe of its own, and the rollout confirms it: refused connections, advice that names the proxy container (exit 1)", func(ctx SpecContext) {
		manifest := filepath.Join(testdata, "storefront.yaml")
		code, out, errOut := nodrop(ctx, "check", "-f", manifest, "--load-image", "storefront:1.0", "--load-image", "edge-proxy:1.0", "--cluster", suiteEnv.Name, "--json")
		Expect(code).To(Equal(1), "check: %s", errOut)
		Expect(errOut).To(ContainSubstring("container edge-proxy receives the Service's traffic"), "the review names the sidecar")
		Expect(errOut).To(ContainSubstring("measured by nodrop's variant sidecar-prestop-app-only"))
		rs := runs(out)
		Expect(rs).To(HaveLen(2))
		for _, r := range rs {
			Expect(r.Verdict).To(Equal("lossy"), "%s", r.Load)
			Expect(r.Report.LostByClass["refused"]).To(BeNumerically(">", 0), "%s: the proxy closed its listener at deletion while kube-proxy still sent the pod connections", r.Load)
			Expect(strings.Join(r.Advice, "\n")).To(ContainSubstring("container edge-proxy got SIGTERM at the deletion"), "%s: the advice names the container that stopped first", r.Load)
		}
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(8*time.Minute))

	It("flags Debian's stock nginx without preStop and with a TCP probe, and the rollout confirms it: lost requests explained, on a cluster named only by its kubeconfig (exit 1)", func(ctx SpecContext) {
		manifest := filepath.Join(testdata, "stock-nginx.yaml")
		code, out, _ := nodrop(ctx, "lint", "-f", manifest, "--json")
		Expect(code).To(Equal(1))
		var findings []struct{ Rule, Variant string }
		Expect(json.Unmarshal([]byte(out), &findings)).To(Succeed())
		var rules []string
		for _, f := range findings {
			rules = append(rules, f.Rule)
		}
		Expect(rules).To(ContainElements("no-prestop", "tcp-readiness-probe", "no-pdb", "restricted-security-context"))

		code, _, errOut := nodrop(ctx, "images", "load", "--cluster", suiteEnv.Name, "webserver:stock")
		Expect(code).To(Equal(0), "images load: %s", errOut)
		code, out, errOut = nodrop(ctx, "check", "-f", manifest, "--kubeconfig", suiteEnv.Kubeconfig, "--json")
		Expect(code).To(Equal(1), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(2))
		for _, r := range rs {
			Expect(r.Verdict).To(Equal("lossy"), "%s", r.Load)
			Expect(r.Report.Lost).To(BeNumerically(">", 0))
			for class, n := range r.Report.LostByClass {
				if n > 0 {
					Expect([]string{"refused", "reset", "eof", "timeout"}).To(ContainElement(class), "nginx stopping loses connections, never answers 5xx")
				}
			}
			Expect(r.Advice).NotTo(BeEmpty())
			Expect(strings.Join(r.Advice, "\n")).To(Or(ContainSubstring("preStop"), ContainSubstring("readiness")), "the advice names what to change")
		}
		Expect(errOut).To(ContainSubstring("What happened, and what to change"), "check explains the loss")
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "check deletes every namespace it made")
	}, SpecTimeout(6*time.Minute))

	It("says at once when an image is not on the nodes, leaves nothing behind (exit 2)", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		raw, err := os.ReadFile(filepath.Join(testdata, "shop.yaml"))
		Expect(err).NotTo(HaveOccurred())
		manifest := filepath.Join(dir, "shop.yaml")
		Expect(os.WriteFile(manifest, bytes.ReplaceAll(raw, []byte("image: shop:1.0"), []byte("image: shop:never-built")), 0o644)).To(Succeed())
		start := time.Now()
		code, _, errOut := nodrop(ctx, "check", "-f", manifest, "--cluster", suiteEnv.Name, "--mode", "keepalive")
		Expect(code).To(Equal(2))
		Expect(errOut).To(ContainSubstring("shop:never-built"))
		Expect(errOut).To(MatchRegexp(`ErrImagePull|ImagePullBackOff|ErrImageNeverPull`))
		Expect(time.Since(start)).To(BeNumerically("<", 2*time.Minute), "detected from the pod's state, not after the availability timeout")
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty())
	}, SpecTimeout(4*time.Minute))

	It("runs what `nodrop render` prints as printed", func(ctx SpecContext) {
		code, out, _ := nodrop(ctx, "render", "baseline-good", "--cluster", suiteEnv.Name)
		Expect(code).To(Equal(0))
		manifest := filepath.Join(GinkgoT().TempDir(), "baseline-good.yaml")
		Expect(os.WriteFile(manifest, []byte(out), 0o644)).To(Succeed())
		code, out, errOut := nodrop(ctx, "check", "-f", manifest, "--cluster", suiteEnv.Name, "--mode", "fresh", "--json")
		Expect(code).To(Equal(0), "check: %s", errOut)
		Expect(runs(out)[0].Verdict).To(Equal("lossless"))
	}, SpecTimeout(4*time.Minute))

	// Extended: it creates a cluster of its own (≈ 12 min with its runs),
	// more than CI can give it; make e2e runs it.
	It("judges a Deployment on a second, three-node cluster named only by its kubeconfig (exit 0)", suites.Extended, func(ctx SpecContext) {
		config := filepath.Join(GinkgoT().TempDir(), "kind-config-multinode.yaml")
		Expect(os.WriteFile(config, sources.MultiNodeKindConfig, 0o644)).To(Succeed())
		log := progress.New(GinkgoWriter, false)
		multi, err := cluster.Up(ctx, cluster.Options{Name: "nodrop-multi", ConfigPath: config, NodeImage: suiteEnv.NodeImage, StateDir: suiteEnv.StateDir, Recreate: true, Log: log, Program: helperProgram()})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(cluster.Down(ctx, multi.Name, suiteEnv.StateDir, log)).To(Succeed())
		}, NodeTimeout(2*time.Minute))
		Expect(multi.NodeIPs).To(HaveLen(3))

		// On a cluster of the user's own, images are the user's business:
		// nodrop loads none unless asked.
		code, _, errOut := nodrop(ctx, "images", "load", "--cluster", multi.Name, "shop:1.0")
		Expect(code).To(Equal(0), "images load: %s", errOut)
		code, out, errOut := nodrop(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--kubeconfig", multi.Kubeconfig, "--mode", "keepalive", "--json")
		Expect(code).To(Equal(0), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(1))
		Expect(rs[0].Verdict).To(Equal("lossless"))
		Expect(rs[0].Report.Total).To(BeNumerically(">", 10000))
		Expect(errOut).To(ContainSubstring("nodrop-multi-worker"), "the pods ran on the workers, reached through the control plane's NodePort")

		// The same from inside the cluster, as a user of a cluster of
		// their own does it: the generator's image built from this nodrop
		// and put where the nodes pull from (here: loaded), two generator
		// pods spread across the workers, one merged verdict.
		code, ref, errOut := nodrop(ctx, "images", "generator")
		Expect(code).To(Equal(0), "images generator: %s", errOut)
		ref = strings.TrimSpace(ref)
		Expect(ref).To(MatchRegexp(`^nodrop/generator:[0-9a-f]{12}$`))
		code, _, errOut = nodrop(ctx, "images", "load", "--cluster", multi.Name, ref)
		Expect(code).To(Equal(0), "images load: %s", errOut)
		// The kubeconfig is all it needs: no node port is reached from
		// here (the node address given leads nowhere).
		code, out, errOut = nodrop(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--kubeconfig", multi.Kubeconfig, "--mode", "keepalive",
			"--load-from", "cluster", "--generator-image", ref, "--node-ip", "198.51.100.7", "--json")
		Expect(code).To(Equal(0), "check --load-from cluster: %s", errOut)
		rs = runs(out)
		Expect(rs).To(HaveLen(1))
		Expect(rs[0].Verdict).To(Equal("lossless"))
		Expect(errOut).To(ContainSubstring("from 2 generator pods in the cluster"))
		Expect(errOut).To(ContainSubstring("waiting for service shop port 80 (through the API server) to serve"))
		gens := rs[0].Report.Generators
		Expect(gens).To(HaveLen(2), "one part per generator pod")
		Expect([]string{gens[0].Name, gens[1].Name}).To(ConsistOf(HaveSuffix(" on nodrop-multi-worker"), HaveSuffix(" on nodrop-multi-worker2")), "spread across the workers")
		Expect(gens[0].Sent+gens[1].Sent).To(Equal(rs[0].Report.Total), "every request counted once")
		Expect(jobsLeft(ctx, multi.Kubeconfig)).To(BeEmpty(), "the generators' Job goes with the run")

		// What only clients in the cluster see: internalTrafficPolicy:
		// Local, one pod per node rolled one at a time. From the host
		// (a NodePort, external policy Cluster) the rollout loses nothing.
		local := filepath.Join(testdata, "shop-local.yaml")
		code, out, errOut = nodrop(ctx, "check", "-f", local, "--kubeconfig", multi.Kubeconfig, "--mode", "fresh", "--json")
		Expect(code).To(Equal(0), "check shop-local from the host: %s", errOut)
		Expect(runs(out)[0].Verdict).To(Equal("lossless"))
		// From generator pods on the workers, the clients on the node whose
		// pod is replaced have nowhere to go: kube-proxy drops their
		// connections, and the advice names the policy from the measurement.
		// Generator pods run at normal priority (a restricted pod cannot
		// take real-time), so on a small machine a run is more often not
		// judged than from the host: one attempt more.
		code, out, errOut = nodrop(ctx, "check", "-f", local, "--kubeconfig", multi.Kubeconfig, "--mode", "fresh",
			"--load-from", "cluster", "--generator-image", ref, "--attempts", "3", "--json")
		Expect(code).To(Equal(1), "check shop-local --load-from cluster: %s", errOut)
		rs = runs(out)
		Expect(rs).To(HaveLen(1))
		r := rs[0]
		Expect(r.Verdict).To(Equal("lossy"))
		Expect(r.Report.LostByClass["timeout"]).To(BeNumerically(">", 0), "dropped connections time out")
		for _, l := range r.Report.Losses {
			Expect(l.Generator).To(MatchRegexp(`^nodrop-load-\w+-\w+ on nodrop-multi-worker2?$`), "each loss names the generator pod and its worker")
		}
		Expect(strings.Join(r.Advice, "\n")).To(ContainSubstring("internalTrafficPolicy: Local"), "the advice names the policy")
		// Its twin, the same shop with internalTrafficPolicy: Cluster, loses
		// nothing from the same generators.
		raw, err := os.ReadFile(local)
		Expect(err).NotTo(HaveOccurred())
		twin := filepath.Join(GinkgoT().TempDir(), "shop-cluster.yaml")
		Expect(os.WriteFile(twin, bytes.ReplaceAll(raw, []byte("internalTrafficPolicy: Local"), []byte("internalTrafficPolicy: Cluster")), 0o644)).To(Succeed())
		code, out, errOut = nodrop(ctx, "check", "-f", twin, "--kubeconfig", multi.Kubeconfig, "--mode", "fresh",
			"--load-from", "cluster", "--generator-image", ref, "--attempts", "3", "--json")
		Expect(code).To(Equal(0), "check shop-cluster --load-from cluster: %s", errOut)
		Expect(runs(out)[0].Verdict).To(Equal("lossless"))
		Expect(jobsLeft(ctx, multi.Kubeconfig)).To(BeEmpty())
	}, SpecTimeout(20*time.Minute))

	It("sends the load from generator pods in the cluster with --load-from cluster: stock nginx loses requests there too, each loss naming the pod that sent it (exit 1)", func(ctx SpecContext) {
		code, _, errOut := nodrop(ctx, "images", "load", "--cluster", suiteEnv.Name, "webserver:stock")
		Expect(code).To(Equal(0), "images load: %s", errOut)
		code, out, errOut := nodrop(ctx, "check", "-f", filepath.Join(testdata, "stock-nginx.yaml"), "--cluster", suiteEnv.Name, "--mode", "fresh",
			"--load-from", "cluster", "--json")
		Expect(code).To(Equal(1), "check: %s", errOut)
		rs := runs(out)
		Expect(rs).To(HaveLen(1))
		r := rs[0]
		Expect(r.Verdict).To(Equal("lossy"))
		Expect(r.Report.Generators).To(HaveLen(2))
		for _, g := range r.Report.Generators {
			Expect(g.Problem).To(BeEmpty(), "%s delivered its share", g.Name)
		}
		Expect(r.Report.Losses).NotTo(BeEmpty())
		for _, l := range r.Report.Losses {
			Expect(l.Generator).To(MatchRegexp(`^nodrop-load-\w+-\w+ on `), "each loss names the generator pod and its node")
			Expect([]string{"refused", "reset", "eof", "timeout"}).To(ContainElement(l.Class), "nginx stopping loses connections, never answers 5xx")
		}
		Expect(leftNamespaces(ctx, "nodrop-check-", CurrentSpecReport().StartTime)).To(BeEmpty(), "the Job goes with the run's namespace")
	}, SpecTimeout(6*time.Minute))

	It("deletes what it created when interrupted, and exits 3 (not judged)", func(ctx SpecContext) {
		cmd, errb := untilRollout(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--cluster", suiteEnv.Name, "--mode", "keepalive", "--namespace", "nodrop-interrupted")
		Expect(leftNamespaces(ctx, "nodrop-interrupted-", CurrentSpecReport().StartTime)).NotTo(BeEmpty())
		interrupt(cmd, errb)
		Expect(leftNamespaces(ctx, "nodrop-interrupted-", CurrentSpecReport().StartTime)).To(BeEmpty())
	}, SpecTimeout(4*time.Minute))

	It("undoes its fault when interrupted mid-fault (kube-proxy runs again), deletes what it created and exits 3", func(ctx SpecContext) {
		// Registered first, so it runs last: after the process is killed, if
		// the spec fails, the specs after it still need kube-proxy.
		DeferCleanup(resumeKubeProxy)
		cmd, errb := untilRollout(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--cluster", suiteEnv.Name, "--mode", "fresh",
			"--namespace", "nodrop-chaos-interrupted", "--fault", "pause-kube-proxy=2m", "--fault-at", "0s")
		Eventually(errb.String).WithContext(ctx).WithTimeout(time.Minute).Should(ContainSubstring("fault: kube-proxy paused 2m"))
		Expect(kubeProxyState(ctx)).To(Equal("T"), "kube-proxy is stopped during the fault")
		interrupt(cmd, errb)
		Expect(errb.String()).To(ContainSubstring("fault undone: kube-proxy paused 2m"))
		Expect(kubeProxyState(ctx)).NotTo(Equal("T"), "kube-proxy runs again")
		Expect(leftNamespaces(ctx, "nodrop-chaos-interrupted-", CurrentSpecReport().StartTime)).To(BeEmpty())
	}, SpecTimeout(4*time.Minute))

	It("cannot clean up when killed (SIGKILL) mid-fault, and the next `nodrop cluster up` deletes its namespace and resumes kube-proxy", func(ctx SpecContext) {
		DeferCleanup(resumeKubeProxy) // runs after the process is killed
		cmd, errb := untilRollout(ctx, "check", "-f", filepath.Join(testdata, "shop.yaml"), "--cluster", suiteEnv.Name, "--mode", "keepalive",
			"--namespace", "nodrop-killed", "--fault", "pause-kube-proxy=2m", "--fault-at", "0s")
		Eventually(errb.String).WithContext(ctx).WithTimeout(time.Minute).Should(ContainSubstring("fault: kube-proxy paused 2m"))
		Expect(cmd.Process.Kill()).To(Succeed())
		_ = cmd.Wait()
		left := leftNamespaces(ctx, "nodrop-killed-", CurrentSpecReport().StartTime)
		Expect(left).To(HaveLen(1), "a killed run leaves its namespace, pods running")
		Expect(kubeProxyState(ctx)).To(Equal("T"), "and kube-proxy stopped")

		code, _, errOut := nodrop(ctx, "cluster", "up", "--name", suiteEnv.Name, "--image", suiteEnv.NodeImage)
		Expect(code).To(Equal(0), "cluster up: %s", errOut)
		Expect(errOut).To(ContainSubstring("left by runs that were killed"), "cluster up says what it deleted")
		Expect(errOut).To(ContainSubstring(strings.Fields(left[0])[0]))
		Expect(errOut).To(ContainSubstring("left stopped: kube-proxy on "), "cluster up says what it resumed")
		Expect(kubeProxyState(ctx)).NotTo(Equal("T"), "kube-proxy runs again")
		Expect(leftNamespaces(ctx, "nodrop-killed-", CurrentSpecReport().StartTime)).To(BeEmpty(), "gone")
	}, SpecTimeout(4*time.Minute))

	It("bench stops at Ctrl-C, deletes the run's namespace, keeps the results so far and exits 3 (not judged)", func(ctx SpecContext) {
		out := GinkgoT().TempDir()
		cmd, errb := untilRollout(ctx, "bench", "--variants", "baseline-good", "--mode", "keepalive", "--runs", "2", "--cluster", suiteEnv.Name, "--out", out, "-v")
		Expect(leftNamespaces(ctx, "bench-baseline-good-", CurrentSpecReport().StartTime)).To(HaveLen(1))
		interrupt(cmd, errb)
		Expect(errb.String()).NotTo(ContainSubstring("[2/2]"), "no run starts after Ctrl-C")
		Expect(leftNamespaces(ctx, "bench-baseline-good-", CurrentSpecReport().StartTime)).To(BeEmpty(), "the run's namespace is deleted")
		md, err := os.ReadFile(filepath.Join(out, "results.md"))
		Expect(err).NotTo(HaveOccurred(), "the results so far are written")
		Expect(string(md)).To(ContainSubstring("baseline-good"))
	}, SpecTimeout(4*time.Minute))
})

// jobsLeft are the generators' Jobs still in the cluster of kubeconfig.
func jobsLeft(ctx context.Context, kubeconfig string) []string {
	GinkgoHelper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	c, err := kubernetes.NewForConfig(rc)
	Expect(err).NotTo(HaveOccurred())
	list, err := c.BatchV1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=nodrop-generator"})
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, j := range list.Items {
		if j.DeletionTimestamp == nil {
			out = append(out, j.Namespace+"/"+j.Name)
		}
	}
	return out
}

// kubeProxyState is the state letter of kube-proxy's process on the
// suite's (first) node: T while a fault holds it stopped.
func kubeProxyState(ctx context.Context) string {
	GinkgoHelper()
	sh := cluster.Shell{Cluster: suiteEnv.Name}
	nodes, err := sh.Nodes(ctx)
	Expect(err).NotTo(HaveOccurred())
	out, err := sh.Run(ctx, nodes[0], `awk '{print $3}' /proc/$(pgrep -x kube-proxy)/stat`)
	Expect(err).NotTo(HaveOccurred(), "reading kube-proxy's state")
	return strings.TrimSpace(out)
}

// resumeKubeProxy resumes a kube-proxy a failed spec left stopped.
func resumeKubeProxy(ctx context.Context) error {
	_, err := chaos.Resume(ctx, cluster.Shell{Cluster: suiteEnv.Name})
	return err
}

// leftNamespaces are the namespaces named with prefix, made since the
// spec started (not ones an earlier, killed run left), that still exist.
func leftNamespaces(ctx context.Context, prefix string, since time.Time) []string {
	list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, n := range list.Items {
		if strings.HasPrefix(n.Name, prefix) && !n.CreationTimestamp.Time.Before(since.Truncate(time.Second)) {
			out = append(out, n.Name+" ("+string(n.Status.Phase)+")")
		}
	}
	return out
}

// lockedBuffer is a bytes.Buffer a process writes while a spec reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

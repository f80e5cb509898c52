package suites_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/exec"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/suites"
	"github.com/nodrop-dev/nodrop/suites/framework"
	. "github.com/nodrop-dev/nodrop/suites/matchers"
)

// hotTimeout bounds one hot-upgrade spec, set-up and calibration included.
var hotTimeout = SpecTimeout(4 * time.Minute)

// Load of the hot-upgrade specs.
const (
	hotRate = 1000
	// longLivedConns is how many persistent connections long-lived load
	// keeps; each sends back to back for the whole spec.
	longLivedConns = 10
)

// hotLoad is the kind of load a hot-upgrade spec runs.
type hotLoad string

const (
	freshConns    hotLoad = "fresh connections"
	longLivedHTTP hotLoad = "long-lived HTTP/1.1"
	longLivedRPC  hotLoad = "long-lived RPC"
)

func (l hotLoad) config(httpURL, rpcURL string) loadgen.Config {
	switch l {
	case longLivedHTTP:
		return loadgen.Config{Targets: []string{httpURL}, Rate: hotRate, Connections: longLivedConns}
	case longLivedRPC:
		return loadgen.Config{Targets: []string{rpcURL}, Rate: hotRate, Connections: longLivedConns}
	}
	return loadgen.Config{Targets: []string{httpURL}, Rate: hotRate, DisableKeepAlive: true}
}

// nginxCase is one way of replacing nginx's binary in a running pod.
type nginxCase struct {
	variant  string   // images.Catalogue variant
	command  []string // run in the container, under load
	exitCode int      // the command's
	load     hotLoad
	lossless bool
	classes  []loadgen.Class // lossy cases: the mechanism's loss classes
	upgraded bool            // v2 answers afterwards
	restarts bool            // the container restarts
	why      string
}

var (
	nginxUpgrade = []string{"nginx-upgrade", "v2"}
	nginxQuit    = []string{"/usr/sbin/nginx", "-c", "/etc/nginx/nodrop.conf", "-s", "quit"}
)

func nginxWorkload() fixtures.Workload {
	return fixtures.Workload{
		Name: "nginx", Replicas: 1, Readiness: fixtures.ProbeHTTP, GracePeriod: 30 * time.Second,
		MaxSurge: intstr.FromInt32(1), MaxUnavailable: intstr.FromInt32(0),
	}
}

var _ = Describe("nginx binary upgrade in a running pod, under load", suites.HotUpgrade, Serial, func() {
	DescribeTable("nginx",
		func(ctx SpecContext, tc nginxCase) {
			ns, rec := hotNamespace(ctx, "nginx")
			objs, err := nginxWorkload().Render(ns, suiteEnv.Images[tc.variant])
			Expect(err).NotTo(HaveOccurred())
			url, err := framework.DeployServing(ctx, client, objs, suiteEnv.NodeIPs[0], timeouts)
			Expect(err).NotTo(HaveOccurred())
			pod := onlyPod(ctx, objs)

			cfg := tc.load.config(url, "")
			calibrate(ctx, cfg)

			By(fmt.Sprintf("running %v in the container under %d rps, %s", tc.command, hotRate, tc.load))
			load := startLoad(ctx, cfg)
			load.waitSent(ctx, hotRate/2)
			out, stderr, err := framework.Exec(ctx, restConfig, client, ns, pod.Name, "app", tc.command...)
			rec.RecordLines(pod.Name, out)
			rec.Record(probes.Event{Kind: probes.App, Pod: pod.Name, Detail: fmt.Sprintf("%s exited %d", strings.Join(tc.command, " "), exitCode(err))})
			if !tc.restarts {
				Expect(exitCode(err)).To(Equal(tc.exitCode), "%v: %v\n%s%s", tc.command, err, out, stderr)
			}
			if tc.restarts {
				Expect(framework.WaitRestartedAndReady(ctx, client, ns, pod.Name, timeouts.Available)).To(Succeed())
			}
			load.waitSent(ctx, load.sent()+2*hotRate)
			r := load.stop()

			judgeHot(r, rec.Events(), tc.lossless, tc.classes, tc.why)
			Expect(r.ByVersion["v2"] > 0).To(Equal(tc.upgraded), "v2 answered %d requests; by version %v", r.ByVersion["v2"], r.ByVersion)
			p, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(framework.RestartCount(p) > 0).To(Equal(tc.restarts), "container restarts: %d", framework.RestartCount(p))
		},
		Entry("under nodrop's init, USR2, WINCH and QUIT lose no request on new connections", suites.Lossless, hotTimeout, nginxCase{
			variant: "nginx-init", command: nginxUpgrade, load: freshConns, lossless: true, upgraded: true,
			why: "daemonized nginx under an init that adopts orphans: the new master inherits the listening socket, the old workers finish and exit",
		}),
		Entry("as PID 1, nginx ignores USR2 and keeps the old version (no loss, no upgrade)", suites.Lossless, hotTimeout, nginxCase{
			variant: "nginx-pid1", command: nginxUpgrade, exitCode: 3, load: freshConns, lossless: true, upgraded: false,
			why: "nginx in the foreground as PID 1 never sees its parent change, so it takes itself for a new binary and ignores USR2",
		}),
		Entry("as PID 1, quitting nginx restarts the container and loses requests (negative control)", suites.KnownLossy, hotTimeout, nginxCase{
			variant: "nginx-pid1", command: nginxQuit, load: freshConns, restarts: true,
			classes: []loadgen.Class{loadgen.Refused, loadgen.Reset, loadgen.EOF, loadgen.Timeout},
			why:     "when PID 1 exits, the container ends; nothing listens until the kubelet has restarted it",
		}),
		Entry("nginx's graceful worker shutdown closes idle kept-alive connections: long-lived clients lose a request on each (known-lossy)", suites.KnownLossy, hotTimeout, nginxCase{
			variant: "nginx-init", command: nginxUpgrade, load: longLivedHTTP, upgraded: true,
			classes: []loadgen.Class{loadgen.EOF, loadgen.Reset},
			why:     "the old workers close idle keep-alive connections at once, without Connection: close; a request already on its way is lost (the idle-close race)",
		}),
	)
})

// hotNamespace creates the spec's namespace with a recorder and the
// failure dump.
func hotNamespace(ctx context.Context, prefix string) (string, *probes.Recorder) {
	ns, err := framework.CreateNamespace(ctx, client, "hot-"+prefix)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) error { return framework.DeleteNamespace(ctx, client, ns, timeouts) })
	DeferCleanup(func(ctx context.Context) {
		if CurrentSpecReport().Failed() {
			framework.Dump(ctx, client, ns, GinkgoWriter)
		}
	})
	rec, err := probes.Start(ctx, client, ns)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(rec.Stop)
	return ns, rec
}

// calibrate runs the spec's load for a few seconds with nothing
// happening: it must lose nothing, or the setup is broken.
func calibrate(ctx context.Context, cfg loadgen.Config) {
	By("calibrating: the same load with nothing happening must lose nothing")
	cfg.Duration = calibrateFor
	cal, err := loadgen.Run(ctx, cfg)
	Expect(err).NotTo(HaveOccurred())
	Expect(cal).To(BeLossless(), "setup broken before any upgrade")
	Expect(cal.RateAchieved).To(BeNumerically(">=", 0.9*float64(cfg.Rate)), "setup broken: the load did not keep its rate")
}

// judgeHot asserts a hot-upgrade verdict and attaches the evidence.
func judgeHot(r *loadgen.Report, events []probes.Event, lossless bool, classes []loadgen.Class, why string) {
	AddReportEntry("load", r.Summary())
	AddReportEntry("losses explained", ReportEntryVisibilityFailureOrVerbose, probes.Explain(r, events))
	AddReportEntry("timeline", ReportEntryVisibilityFailureOrVerbose, probes.Timeline(r, events))
	detail := "\n" + why + "\nlosses:\n" + probes.Explain(r, events) + "timeline:\n" + probes.Timeline(r, events)
	if lossless {
		Expect(r).To(BeLossless(), detail)
		return
	}
	Expect(r).To(LoseRequests(), "a known-lossy configuration lost nothing: the harness missed it"+detail)
	Expect(classes).To(ContainElement(r.DominantClass()), "mostly %s losses, but the mechanism produces %v%s", r.DominantClass(), classes, detail)
}

func onlyPod(ctx context.Context, objs fixtures.Objects) corev1.Pod {
	pods, err := framework.PodsOf(ctx, client, objs.Deployment)
	Expect(err).NotTo(HaveOccurred())
	Expect(pods).To(HaveLen(1))
	return pods[0]
}

func exitCode(err error) int {
	var ce exec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

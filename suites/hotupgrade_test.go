package suites_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/exec"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites"
)

// hotTimeout bounds one hot-upgrade spec, set-up and calibration included.
var hotTimeout = SpecTimeout(4 * time.Minute)

// Load of the hot-upgrade specs.
const (
	hotRate = 1000
	// longLivedConns is how many persistent HTTP connections long-lived
	// load keeps; each sends back to back for the whole spec.
	longLivedConns = 10
	// RPC multiplexes: few connections, each with several requests on
	// the wire at every moment, as Dubbo-style clients keep them.
	rpcConns    = 2
	rpcInFlight = 8
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
		return loadgen.Config{Targets: []string{rpcURL}, Rate: hotRate, Connections: rpcConns, InFlight: rpcInFlight}
	}
	return loadgen.Config{Targets: []string{httpURL}, Rate: hotRate, DisableKeepAlive: true}
}

// nginxCase is one way of replacing nginx's binary in a running pod.
type nginxCase struct {
	variant  string   // images.Catalogue variant
	command  []string // run in the container, under load
	exitCode int      // the command's
	load     hotLoad
	expect   scenario.Expectation
	upgraded bool // v2 answers afterwards
	restarts bool // the container restarts
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
			ns, rec := specNamespace(ctx, "hot-nginx")
			objs, err := nginxWorkload().Render(ns, suiteEnv.Images[tc.variant])
			Expect(err).NotTo(HaveOccurred())
			url := deployServing(ctx, objs)
			Expect(err).NotTo(HaveOccurred())
			pod := onlyPod(ctx, objs)

			cfg := tc.load.config(url, "")
			calibrate(ctx, cfg)

			By(fmt.Sprintf("running %v in the container under %d rps, %s", tc.command, hotRate, tc.load))
			load := scenario.StartLoad(ctx, cfg)
			load.WaitSent(ctx, hotRate/2)
			w := scenario.Window{Trigger: time.Now()}
			rec.Record(probes.Event{At: w.Trigger, Kind: probes.Disruption, Pod: pod.Name, Detail: strings.Join(tc.command, " ")})
			out, stderr, err := kube.Exec(ctx, restConfig, client, ns, pod.Name, "app", tc.command...)
			upgradeTook := time.Since(w.Trigger)
			rec.RecordLines(pod.Name, out)
			rec.Record(probes.Event{Kind: probes.App, Pod: pod.Name, Detail: fmt.Sprintf("%s exited %d", strings.Join(tc.command, " "), exitCode(err))})
			if !tc.restarts {
				Expect(exitCode(err)).To(Equal(tc.exitCode), "%v: %v\n%s%s", tc.command, err, out, stderr)
			}
			if tc.restarts {
				Expect(kube.WaitRestartedAndReady(ctx, client, ns, pod.Name, timeouts)).To(Succeed())
			}
			w.Settled = time.Now()
			load.WaitSent(ctx, load.Sent()+int(scenario.TailFor.Seconds()*hotRate))
			w.End = time.Now()
			r, err := load.Stop()
			Expect(err).NotTo(HaveOccurred())

			events := rec.Events()
			res := judge(tc.variant, strings.Join(tc.command, " "), string(tc.load), r, events, w, tc.expect, upgradeTook)
			expectPassed(tc.variant, res)
			Expect(r.ByVersion["v2"] > 0).To(Equal(tc.upgraded), "v2 answered %d requests; by version %v", r.ByVersion["v2"], r.ByVersion)
			p, err := client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(kube.RestartCount(p) > 0).To(Equal(tc.restarts), "container restarts: %d", kube.RestartCount(p))
		},
		Entry("under nodrop's init, USR2, WINCH and QUIT lose no request on new connections", suites.Lossless, hotTimeout, nginxCase{
			variant: "nginx-init", command: nginxUpgrade, load: freshConns, upgraded: true,
			expect: scenario.Expectation{Verdict: loadgen.Lossless,
				Why: "daemonized nginx under an init that adopts orphans: the new master inherits the listening socket, the old workers finish and exit"},
		}),
		Entry("as PID 1, nginx ignores USR2 and keeps the old version (no loss, no upgrade)", suites.Lossless, hotTimeout, nginxCase{
			variant: "nginx-pid1", command: nginxUpgrade, exitCode: 3, load: freshConns, upgraded: false,
			expect: scenario.Expectation{Verdict: loadgen.Lossless, Versions: &scenario.VersionChange{Before: "v1", After: "v1"},
				Why: "nginx in the foreground as PID 1 never sees its parent change, so it takes itself for a new binary and ignores USR2"},
		}),
		Entry("as PID 1, quitting nginx restarts the container and loses requests (negative control)", suites.KnownLossy, hotTimeout, nginxCase{
			variant: "nginx-pid1", command: nginxQuit, load: freshConns, restarts: true,
			expect: scenario.Expectation{Verdict: loadgen.Lossy,
				Classes: map[loadgen.Class]string{
					loadgen.Refused: "nothing listens in the pod between nginx's exit and the restarted container's start",
					loadgen.Timeout: "while the restarted container is not ready, the only pod is no endpoint and connections to the NodePort go unanswered",
					loadgen.Reset:   "connections open when nginx's workers end are reset",
					loadgen.EOF:     "connections open when nginx's workers end are closed before their answer",
				},
				LossStarts: []scenario.Timing{{After: probes.Disruption, Why: "at once: quitting PID 1 ends the container"}},
				Why:        "when PID 1 exits, the container ends; nothing listens until the kubelet has restarted it"},
		}),
		Entry("nginx's graceful worker shutdown closes every idle kept-alive connection: long-lived clients that look before reuse move on, only a request already on its way can be lost", suites.Lossless, hotTimeout, nginxCase{
			variant: "nginx-init", command: nginxUpgrade, load: longLivedHTTP, upgraded: true,
			expect: scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.Some, RacesAllowed: longLivedConns,
				Why: "the old workers close idle keep-alive connections at once, without Connection: close: a client that looks at its connection before reusing it sees the close; only a request written as the close lands is lost (the idle-close race, at most one per connection)"},
		}),
	)
})

func onlyPod(ctx context.Context, objs fixtures.Objects) corev1.Pod {
	pods, err := kube.PodsOf(ctx, client, objs.Deployment)
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

// sidecarCase is one way of upgrading the injected proxy in place.
type sidecarCase struct {
	upgradeType string // fixtures.HotUpgrade or ColdUpgrade
	handoff     string // HotUpgrade: migrate or drain
	drainStyle  string // drain: connection-close (default) or close-idle
	probe       bool   // a readiness probe on the proxy
	http, rpc   scenario.Expectation
	// stayReady: the pod must stay Ready and its endpoint ready throughout.
	stayReady bool
}

// Loss classes of a proxy that goes away under long-lived load.
var (
	brokenConnection = map[loadgen.Class]string{
		loadgen.Reset: "the old proxy closes connections with requests on them; the kernel resets those with unread data",
		loadgen.EOF:   "the old proxy closes connections with requests on them before their answers",
	}
	proxyRestart = map[loadgen.Class]string{
		loadgen.Reset:   "the stopped proxy's connections are reset with requests on them",
		loadgen.EOF:     "the stopped proxy's connections close before their answers",
		loadgen.Refused: "nothing listens on the proxy's port until the new container starts",
	}
)

// What a migration must show: nothing lost, and no client sees a close.
// What a cold upgrade shows: HTTP losses from the old proxy's SIGTERM
// (it stops accepting while its clients move on Connection: close), RPC
// losses from the end of its drain (its connections closed under them).
var (
	coldRestartHTTP = scenario.Expectation{Verdict: loadgen.Lossy, Classes: proxyRestart,
		LossStarts: []scenario.Timing{{After: probes.App, Detail: "sigterm", Why: "the stopped proxy accepts nothing more while HTTP clients move on"}},
		Why:        "the proxy container is stopped and started again: the port is closed in between and every connection breaks"}
	coldRestartRPC = scenario.Expectation{Verdict: loadgen.Lossy, Classes: proxyRestart,
		LossStarts: []scenario.Timing{{After: probes.App, Detail: "drain_end", Why: "the stopped proxy closes its RPC connections at the end of its drain"}},
		Why:        "the proxy container is stopped and started again: the port is closed in between and every connection breaks"}
	migrated = scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.None,
		Why: "the new proxy receives the listening sockets and every established connection with its unread bytes; no client sees a close"}
	migratedBlips = scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.None,
		Why: "established connections do not depend on the endpoint; a NotReady blip only matters to new connections"}
)

var sidecarSetGVR = schema.GroupVersionResource{Group: "apps.kruise.io", Version: "v1alpha1", Resource: "sidecarsets"}

var _ = Describe("OpenKruise SidecarSet upgrade of a proxy in front of the app, under long-lived load", suites.HotUpgrade, Serial, func() {
	DescribeTable("sidecarset",
		func(ctx SpecContext, tc sidecarCase) {
			dyn, err := dynamic.NewForConfig(restConfig)
			Expect(err).NotTo(HaveOccurred())
			ns, rec := specNamespace(ctx, "hot-sidecar")
			selector := map[string]string{"nodrop.dev/sidecarset": ns}
			sc := fixtures.ProxySidecar{
				Name: ns, Namespace: ns, Selector: selector, UpgradeType: tc.upgradeType, Handoff: tc.handoff, DrainStyle: tc.drainStyle, ReadinessProbe: tc.probe,
				Image: suiteEnv.Images["proxy"], EmptyImage: suiteEnv.Images["proxy-empty"],
			}
			obj, err := sc.Render()
			Expect(err).NotTo(HaveOccurred())
			_, err = dyn.Resource(sidecarSetGVR).Create(ctx, obj, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred(), "creating the SidecarSet (is OpenKruise installed? nodrop cluster up --with-kruise)")
			DeferCleanup(func(ctx context.Context) error {
				return dyn.Resource(sidecarSetGVR).Delete(ctx, ns, metav1.DeleteOptions{})
			})

			w := fixtures.Workload{
				Name: "web", ImageVariant: "exec-form", Replicas: 1, Readiness: fixtures.ProbeHTTP, GracePeriod: 30 * time.Second,
				MaxSurge: intstr.FromInt32(1), MaxUnavailable: intstr.FromInt32(0),
				PodLabels: selector, BehindProxy: true,
				// 15 ms per request keeps RPC requests on the wire most of
				// the time, as real RPC traffic does.
				App: fixtures.App{RPC: true, Graceful: "drain", WorkTime: 15 * time.Millisecond},
			}
			objs, err := w.Render(ns, suiteEnv.Images[w.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			httpURL := deployServing(ctx, objs)
			Expect(err).NotTo(HaveOccurred())
			rpcURL, err := kube.ServicePortURL(ctx, client, ns, objs.Service.Name, "rpc", suiteEnv.NodeIPs[0])
			Expect(err).NotTo(HaveOccurred())
			rpcURL = "rpc://" + strings.TrimSuffix(strings.TrimPrefix(rpcURL, "http://"), "/")
			pod := onlyPod(ctx, objs)
			Expect(proxyContainers(&pod)).To(HaveLen(map[string]int{fixtures.HotUpgrade: 2, fixtures.ColdUpgrade: 1}[tc.upgradeType]),
				"the SidecarSet's proxy was not injected: a pod webhook with failurePolicy Ignore skips pods while kruise-manager is down")

			httpCfg, rpcCfg := longLivedHTTP.config(httpURL, ""), longLivedRPC.config("", rpcURL)
			httpCfg.Rate, rpcCfg.Rate = hotRate/2, hotRate/2
			calibrate(ctx, httpCfg, rpcCfg)

			By(fmt.Sprintf("%s of the proxy to v2 under long-lived HTTP and RPC load", tc.upgradeType))
			httpLoad, rpcLoad := scenario.StartLoad(ctx, httpCfg), scenario.StartLoad(ctx, rpcCfg)
			httpLoad.WaitSent(ctx, hotRate/4)
			win := scenario.Window{Trigger: time.Now()}
			rec.Record(probes.Event{At: win.Trigger, Kind: probes.Disruption, Detail: "SidecarSet image v1→v2"})
			Expect(setSidecarImage(ctx, dyn, ns, suiteEnv.Images["proxy-v2"])).To(Succeed())
			Expect(waitSidecarUpgraded(ctx, pod, tc.upgradeType)).To(Succeed())
			win.Settled = time.Now()
			upgradeTook := win.Settled.Sub(win.Trigger)
			httpLoad.WaitSent(ctx, httpLoad.Sent()+int(scenario.TailFor.Seconds()*float64(httpCfg.Rate)))
			win.End = time.Now()
			httpR, err := httpLoad.Stop()
			Expect(err).NotTo(HaveOccurred())
			rpcR, err := rpcLoad.Stop()
			Expect(err).NotTo(HaveOccurred())

			events := rec.Events()
			notReady := 0
			for _, e := range events {
				if e.At.After(win.Trigger) && (e.Kind == probes.PodNotReady || e.Kind == probes.EndpointNotReady || e.Kind == probes.EndpointRemoved) {
					notReady++
				}
			}
			AddReportEntry("upgrade", fmt.Sprintf("%s took %s; pod or endpoint not ready %d times", tc.upgradeType, upgradeTook.Round(time.Millisecond), notReady))
			config := "proxy " + tc.upgradeType
			if tc.handoff != "" {
				config += " " + tc.handoff
			}
			if tc.drainStyle != "" {
				config += " " + tc.drainStyle
			}
			if tc.probe {
				config += " +probe"
			}
			// Both rows are recorded before either is asserted.
			httpRes := judge(config, "sidecarset image v1→v2", string(longLivedHTTP), httpR, events, win, tc.http, upgradeTook)
			rpcRes := judge(config, "sidecarset image v1→v2", string(longLivedRPC), rpcR, events, win, tc.rpc, upgradeTook)
			expectPassed("HTTP", httpRes)
			expectPassed("RPC", rpcRes)
			if tc.stayReady {
				Expect(notReady).To(BeZero(), "the pod left Ready or its endpoint during the upgrade:\n%s", probes.Timeline(httpR, events))
			}
		},
		Entry("HotUpgrade with listener handoff and connection migration loses nothing, over HTTP and RPC, no client sees a close, and the pod stays Ready", suites.Lossless, hotTimeout, sidecarCase{
			upgradeType: fixtures.HotUpgrade, handoff: "migrate", stayReady: true,
			http: migrated, rpc: migrated,
		}),
		Entry("HotUpgrade with a readiness probe on the proxy, connection migration: long-lived clients lose nothing (Ready blips measured)", suites.Lossless, hotTimeout, sidecarCase{
			upgradeType: fixtures.HotUpgrade, handoff: "migrate", probe: true,
			http: migratedBlips, rpc: migratedBlips,
		}),
		Entry("HotUpgrade with drain only: HTTP clients move on Connection: close, RPC clients lose requests (negative control)", suites.KnownLossy, hotTimeout, sidecarCase{
			upgradeType: fixtures.HotUpgrade, handoff: "drain",
			http: scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.Some,
				Why: "the old proxy answers with Connection: close while it drains: every HTTP client moves to the new one"},
			rpc: scenario.Expectation{Verdict: loadgen.Lossy, Classes: brokenConnection,
				LossStarts: []scenario.Timing{{After: probes.App, Detail: "drain_end", Why: "the old proxy closes what is left at the end of its drain period"}},
				Why:        "RPC has no close signal: the old proxy can only close connections with requests on them — why migration exists"},
		}),
		Entry("HotUpgrade with a drain that closes idle connections at once: HTTP clients that look before reuse move on, RPC clients lose requests (negative control)", suites.KnownLossy, hotTimeout, sidecarCase{
			upgradeType: fixtures.HotUpgrade, handoff: "drain", drainStyle: "close-idle",
			http: scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.Some, RacesAllowed: longLivedConns,
				Why: "the old proxy closes idle HTTP connections at once: a client that looks before reuse sees it; only a request written as the close lands is lost (idle-close race)"},
			rpc: scenario.Expectation{Verdict: loadgen.Lossy, Classes: brokenConnection,
				LossStarts: []scenario.Timing{{After: probes.App, Detail: "drain_start", Why: "the old proxy closes every connection as its drain starts"}},
				Why:        "RPC connections are never idle under load: the old proxy closes them with requests on them"},
		}),
		Entry("ColdUpgrade restarts the proxy in place and loses requests (negative control)", suites.KnownLossy, hotTimeout, sidecarCase{
			upgradeType: fixtures.ColdUpgrade,
			http:        coldRestartHTTP, rpc: coldRestartRPC,
		}),
	)
})

// proxyContainers are the pod's injected proxy containers.
func proxyContainers(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range p.Spec.Containers {
		if c.Name == fixtures.ContainerName || strings.HasPrefix(c.Name, fixtures.ContainerName+"-") {
			out = append(out, c)
		}
	}
	return out
}

// setSidecarImage changes the SidecarSet's proxy image: the upgrade.
func setSidecarImage(ctx context.Context, dyn dynamic.Interface, name, image string) error {
	ss, err := dyn.Resource(sidecarSetGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	containers, _, err := unstructured.NestedSlice(ss.Object, "spec", "containers")
	if err != nil || len(containers) != 1 {
		return fmt.Errorf("sidecarset %s: want one container: %v", name, err)
	}
	containers[0].(map[string]any)["image"] = image
	if err := unstructured.SetNestedSlice(ss.Object, containers, "spec", "containers"); err != nil {
		return err
	}
	_, err = dyn.Resource(sidecarSetGVR).Update(ctx, ss, metav1.UpdateOptions{})
	return err
}

// waitSidecarUpgraded waits until the pod runs the v2 proxy, and under
// HotUpgrade until Kruise has also reset the old container to the empty
// image, with every container running and the pod Ready.
func waitSidecarUpgraded(ctx context.Context, pod corev1.Pod, upgradeType string) error {
	want := map[string]int{suiteEnv.Images["proxy-v2"]: 1}
	if upgradeType == fixtures.HotUpgrade {
		want[suiteEnv.Images["proxy-empty"]] = 1
	}
	last := "not seen yet"
	err := wait.PollUntilContextTimeout(ctx, timeouts.Poll, timeouts.Rollout, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		got := map[string]int{}
		for _, c := range p.Status.ContainerStatuses {
			if !strings.HasPrefix(c.Name, fixtures.ContainerName) {
				continue
			}
			if c.State.Running == nil {
				last = c.Name + " is not running"
				return false, nil
			}
			// The status, not the spec: Kruise changes the spec at once,
			// the kubelet restarts the container later.
			got[strings.TrimPrefix(c.Image, "docker.io/")]++
		}
		last = fmt.Sprintf("proxy images %v, ready %v", got, kube.PodReady(p))
		return reflect.DeepEqual(got, want) && kube.PodReady(p), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the proxy upgrade of %s: %s: %w", pod.Name, last, err)
	}
	return nil
}

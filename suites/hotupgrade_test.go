package suites_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/exec"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/internal/kruise"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
	"github.com/nodrop-dev/nodrop/suites"
)

// hotTimeout bounds one hot-upgrade spec, set-up and calibration included.
var hotTimeout = SpecTimeout(4 * time.Minute)

func hotLabel(lossy bool) Labels {
	if lossy {
		return suites.KnownLossy
	}
	return suites.Lossless
}

// nginxEntries are the catalogue's nginx cases (fixtures.NginxCases).
func nginxEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.NginxCases {
		entries = append(entries, Entry(c.Claim, hotLabel(c.Load.Expect.Verdict == fixtures.Lossy), hotTimeout, c))
	}
	return entries
}

// Not Serial, as the rollout specs: a namespace, Service and load of their own.
var _ = Describe("nginx binary upgrade in a running pod, under load", suites.HotUpgrade, func() {
	DescribeTable("nginx",
		func(ctx SpecContext, c fixtures.NginxCase) {
			objs, err := fixtures.NginxWorkload().Render("", suiteEnv.Images[c.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			list, err := objs.Unstructured()
			Expect(err).NotTo(HaveOccurred())
			command := strings.Join(c.Command, " ")
			// What the disruption saw, asserted after the run.
			var pod string
			var restarts int32
			s := scenario.Scenario{
				Name: c.ImageVariant, Objects: list, NamespacePrefix: "hot-nginx", PodSecurity: kube.PodSecurityBaseline,
				Traffic: []scenario.Traffic{c.Load.Load.Traffic(fixtures.HotRate, c.Load.Expect)},
				Disruption: scenario.Disruption{
					Name: command,
					Apply: func(ctx context.Context, l *scenario.Live) error {
						pods, err := l.Pods(ctx)
						if err != nil || len(pods) != 1 {
							return fmt.Errorf("want the one pod of nginx: %d pods, %v", len(pods), err)
						}
						pod = pods[0].Name
						out, stderr, err := kube.Exec(ctx, l.Env.REST, l.Env.Client, l.Namespace, pod, "app", c.Command...)
						l.Recorder.RecordLines(pod, out)
						code := exitCode(err)
						l.Recorder.Record(probes.Event{Kind: probes.App, Pod: pod, Detail: fmt.Sprintf("%s exited %d", command, code)})
						if !c.Restarts && code != c.ExitCode {
							return fmt.Errorf("%s exited %d, want %d: %v\n%s%s", command, code, c.ExitCode, err, out, stderr)
						}
						return nil
					},
					Settled: func(ctx context.Context, l *scenario.Live) error {
						if c.Restarts {
							if err := kube.WaitRestartedAndReady(ctx, l.Env.Client, l.Namespace, pod, l.Env.Timeouts); err != nil {
								return err
							}
						}
						p, err := l.Env.Client.CoreV1().Pods(l.Namespace).Get(ctx, pod, metav1.GetOptions{})
						if err != nil {
							return err
						}
						restarts = kube.RestartCount(p)
						return nil
					},
				},
			}
			By(fmt.Sprintf("running %s in the container under %d rps, %s", command, fixtures.HotRate, c.Load.Load))
			res, err := s.Run(ctx, scenarioEnv())
			record(res)
			Expect(err).NotTo(HaveOccurred())
			expectPassed(c.ImageVariant, res)
			r := res.Traffic[0].Report
			Expect(r.ByVersion["v2"] > 0).To(Equal(c.Upgraded), "v2 answered %d requests; by version %v", r.ByVersion["v2"], r.ByVersion)
			Expect(restarts > 0).To(Equal(c.Restarts), "container restarts: %d", restarts)
		},
		nginxEntries(),
	)
})

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

// sidecarEntries are the catalogue's SidecarSet cases (fixtures.SidecarCases).
func sidecarEntries() []TableEntry {
	var entries []TableEntry
	for _, c := range fixtures.SidecarCases {
		entries = append(entries, Entry(c.Claim, hotLabel(c.HTTP.Verdict == fixtures.Lossy || c.RPC.Verdict == fixtures.Lossy), hotTimeout, c))
	}
	return entries
}

// sidecarSets numbers the SidecarSets of this run: they are
// cluster-scoped, and each spec's selects only its own pods.
var sidecarSets atomic.Int64

// Serial: Kruise's controller and webhook serve every SidecarSet, and
// sidecarSets numbers them per process.
var _ = Describe("OpenKruise SidecarSet upgrade of a proxy in front of the app, under long-lived load", suites.HotUpgrade, Serial, func() {
	DescribeTable("sidecarset",
		func(ctx SpecContext, c fixtures.SidecarCase) {
			dyn, err := dynamic.NewForConfig(restConfig)
			Expect(err).NotTo(HaveOccurred())
			name := fmt.Sprintf("nodrop-%d-%d", GinkgoRandomSeed(), sidecarSets.Add(1))
			selector := map[string]string{"nodrop.dev/sidecarset": name}
			w := fixtures.SidecarWorkload(selector)
			objs, err := w.Render("", suiteEnv.Images[w.ImageVariant])
			Expect(err).NotTo(HaveOccurred())
			list, err := objs.Unstructured()
			Expect(err).NotTo(HaveOccurred())

			var traffic []scenario.Traffic
			for _, l := range c.Loads() {
				traffic = append(traffic, l.Load.Traffic(fixtures.HotRate/2, l.Expect))
			}
			var pod corev1.Pod
			s := scenario.Scenario{
				Name: c.Config(), Objects: list, NamespacePrefix: "hot-sidecar",
				// The injected proxy carries the restricted container
				// settings of its SidecarSet (fixtures.ProxySidecar).
				PodSecurity: kube.PodSecurityRestricted,
				Traffic:     traffic,
				Setup: func(ctx context.Context, l *scenario.Live) (func(context.Context) error, error) {
					sc := fixtures.ProxySidecar{
						Name: name, Namespace: l.Namespace, Selector: selector, UpgradeType: c.UpgradeType, Handoff: c.Handoff, DrainStyle: c.DrainStyle, ReadinessProbe: c.Probe,
						Image: suiteEnv.Images["proxy"], EmptyImage: suiteEnv.Images["proxy-empty"],
					}
					obj, err := sc.Render()
					if err != nil {
						return nil, err
					}
					if _, err := dyn.Resource(kruise.SidecarSets).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
						return nil, fmt.Errorf("creating the SidecarSet (is OpenKruise installed? nodrop cluster up --with-kruise): %w", err)
					}
					return func(ctx context.Context) error {
						return dyn.Resource(kruise.SidecarSets).Delete(ctx, name, metav1.DeleteOptions{})
					}, nil
				},
				Disruption: scenario.Disruption{
					Name: "SidecarSet image v1→v2",
					Apply: func(ctx context.Context, l *scenario.Live) error {
						pods, err := l.Pods(ctx)
						if err != nil || len(pods) != 1 {
							return fmt.Errorf("want the one pod of web: %d pods, %v", len(pods), err)
						}
						pod = pods[0]
						want := map[string]int{fixtures.HotUpgrade: 2, fixtures.ColdUpgrade: 1}[c.UpgradeType]
						if n := len(proxyContainers(&pod)); n != want {
							return fmt.Errorf("the SidecarSet's proxy was not injected (%d proxy containers, want %d): a pod webhook with failurePolicy Ignore skips pods while kruise-manager is down", n, want)
						}
						return setSidecarImage(ctx, dyn, name, suiteEnv.Images["proxy-v2"])
					},
					Settled: func(ctx context.Context, l *scenario.Live) error {
						return waitSidecarUpgraded(ctx, l, pod, c.UpgradeType)
					},
				},
			}
			By(fmt.Sprintf("%s of the proxy to v2 under long-lived HTTP and RPC load", c.UpgradeType))
			res, err := s.Run(ctx, scenarioEnv())
			record(res)
			Expect(err).NotTo(HaveOccurred())

			notReady := 0
			for _, e := range res.Events {
				if e.At.After(res.Window.Trigger) && (e.Kind == probes.PodNotReady || e.Kind == probes.EndpointNotReady || e.Kind == probes.EndpointRemoved) {
					notReady++
				}
			}
			AddReportEntry("upgrade", fmt.Sprintf("%s took %s; pod or endpoint not ready %d times", c.UpgradeType, res.Took.Round(time.Millisecond), notReady))
			expectPassed(c.Config(), res)
			if c.StayReady {
				Expect(notReady).To(BeZero(), "the pod left Ready or its endpoint during the upgrade:\n%s", probes.Timeline(res.Traffic[0].Report, res.Events))
			}
		},
		sidecarEntries(),
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
	ss, err := dyn.Resource(kruise.SidecarSets).Get(ctx, name, metav1.GetOptions{})
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
	_, err = dyn.Resource(kruise.SidecarSets).Update(ctx, ss, metav1.UpdateOptions{})
	return err
}

// waitSidecarUpgraded waits until the pod runs the v2 proxy, and under
// HotUpgrade until Kruise has also reset the old container to the empty
// image, with every container running and the pod Ready.
func waitSidecarUpgraded(ctx context.Context, l *scenario.Live, pod corev1.Pod, upgradeType string) error {
	want := map[string]int{suiteEnv.Images["proxy-v2"]: 1}
	if upgradeType == fixtures.HotUpgrade {
		want[suiteEnv.Images["proxy-empty"]] = 1
	}
	last := "not seen yet"
	err := wait.PollUntilContextTimeout(ctx, l.Env.Timeouts.Poll, l.Env.Timeouts.Rollout, true, func(ctx context.Context) (bool, error) {
		p, err := l.Env.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
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

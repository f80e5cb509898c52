// Package kube holds what nodrop does to any Kubernetes cluster: create a
// namespace, deploy objects, wait for observable conditions (and say at
// once when they cannot be met), find the URL load goes to, disrupt a
// Deployment, dump a namespace. Helpers return errors; callers assert.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// Timeouts are every wait of the specs, in one place.
type Timeouts struct {
	// Available bounds a new Deployment becoming available.
	Available time.Duration
	// Serving bounds a Service answering after its Deployment is
	// available: an app whose probe passes as its port opens may warm up
	// for a minute after.
	Serving time.Duration
	// Rollout bounds a rollout, old pods gone included.
	Rollout time.Duration
	// Namespace bounds a namespace's deletion.
	Namespace time.Duration
	// Poll is the interval of every wait.
	Poll time.Duration
}

// DefaultTimeouts suit a single-node kind cluster on a 2-core machine.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Available: 2 * time.Minute,
		Serving:   90 * time.Second,
		Rollout:   3 * time.Minute,
		Namespace: 2 * time.Minute,
		Poll:      200 * time.Millisecond,
	}
}

// Pod Security Standard levels a namespace can enforce.
const (
	PodSecurityNone       = ""
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
)

// CreateNamespace creates a namespace with a generated name that
// enforces the Pod Security Standard level podSecurity (none if ""),
// marked as this process's (OwnerAnnotation).
func CreateNamespace(ctx context.Context, c kubernetes.Interface, prefix, podSecurity string) (string, error) {
	labels := map[string]string{"app.kubernetes.io/part-of": "nodrop"}
	if podSecurity != PodSecurityNone {
		labels["pod-security.kubernetes.io/enforce"] = podSecurity
		labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	}
	ns, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels,
			Annotations: map[string]string{OwnerAnnotation: thisProcess()}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating namespace: %w", err)
	}
	return ns.Name, nil
}

// teardownGrace is the grace period left to the pods of a namespace
// being deleted. The run is over, so how they stop no longer matters;
// left to their own grace (preStop sleeps, drains, the 10 to 30 s of the
// PID 1 variants) the namespace took 26 s to go, with this 5.5 s.
const teardownGrace = int64(1)

// DeleteNamespace deletes a namespace, cuts its pods' grace period to
// teardownGrace (an ordinary delete: the kubelet still stops them, no
// pod is forced off its node) and waits until the namespace is gone.
func DeleteNamespace(ctx context.Context, c kubernetes.Interface, name string, t Timeouts) error {
	err := c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	// The namespace is terminating: its controllers create no new pod.
	grace := teardownGrace
	err = c.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &grace}, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("stopping the pods of namespace %s: %w", name, err)
	}
	err = wait.PollUntilContextTimeout(ctx, t.Poll, t.Namespace, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for namespace %s to go: %w", name, err)
	}
	return nil
}

// WaitAvailable waits until every replica of the Deployment is updated,
// ready and available, and no other pod of it exists, terminating ones
// included: a rollout is over only when every old pod is gone.
func WaitAvailable(ctx context.Context, c kubernetes.Interface, ns, name string, timeout time.Duration, t Timeouts) error {
	var last string
	var stuck error
	err := wait.PollUntilContextTimeout(ctx, t.Poll, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ok, why := rolledOut(d)
		pods, err := PodsOf(ctx, c, d)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if stuck = Stuck(pods); stuck != nil {
			return false, stuck
		}
		if !ok {
			last = why
			return false, nil
		}
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				last = "pod " + p.Name + " is still terminating"
				return false, nil
			}
		}
		if int32(len(pods)) != *d.Spec.Replicas {
			last = fmt.Sprintf("%d pods exist, want %d", len(pods), *d.Spec.Replicas)
			return false, nil
		}
		return true, nil
	})
	if stuck != nil {
		return stuck
	}
	if err != nil {
		return fmt.Errorf("waiting for deployment %s/%s: %s: %w", ns, name, last, err)
	}
	return nil
}

func rolledOut(d *appsv1.Deployment) (bool, string) {
	want := *d.Spec.Replicas
	s := d.Status
	switch {
	case s.ObservedGeneration < d.Generation:
		return false, "controller has not seen the latest spec"
	case s.UpdatedReplicas != want || s.Replicas != want:
		return false, fmt.Sprintf("%d of %d replicas updated, %d in total", s.UpdatedReplicas, want, s.Replicas)
	case s.AvailableReplicas != want || s.ReadyReplicas != want:
		return false, fmt.Sprintf("%d of %d replicas available", s.AvailableReplicas, want)
	}
	return true, ""
}

// PodsOf lists the pods of a Deployment, terminating ones included.
func PodsOf(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, err
	}
	list, err := c.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ServiceURL is the URL of a NodePort Service at a node's address on the
// Docker network: load reaches kube-proxy's rules directly, with no
// userland proxy in between that could hide or rewrite failures.
func ServiceURL(ctx context.Context, c kubernetes.Interface, ns, name, nodeIP string) (string, error) {
	return ServicePortURL(ctx, c, ns, name, "", nodeIP)
}

// ServicePortURL is ServiceURL for the named port ("" for the first).
func ServicePortURL(ctx context.Context, c kubernetes.Interface, ns, name, port, nodeIP string) (string, error) {
	np, err := NodePortOf(ctx, c, ns, name, strconv.Quote(port), func(p corev1.ServicePort) bool { return port == "" || p.Name == port })
	if err != nil {
		return "", err
	}
	return "http://" + nodeIP + ":" + strconv.Itoa(int(np)) + "/", nil
}

// NodePortOf is the node port of the Service's first port that match
// accepts; what names that port in the error when there is none.
func NodePortOf(ctx context.Context, c kubernetes.Interface, ns, name, what string, match func(corev1.ServicePort) bool) (int32, error) {
	svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, fmt.Errorf("reading service %s/%s: %w", ns, name, err)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 && match(p) {
			return p.NodePort, nil
		}
	}
	return 0, fmt.Errorf("service %s/%s has no node port for port %s", ns, name, what)
}

// ClusterAddressOf is where pods of the cluster reach the port of
// Service ns/name that match selects: its ClusterIP and the port's number
// (what is the port as messages name it).
func ClusterAddressOf(ctx context.Context, c kubernetes.Interface, ns, name, what string, match func(corev1.ServicePort) bool) (string, error) {
	svc, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading service %s/%s: %w", ns, name, err)
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", fmt.Errorf("service %s/%s has no cluster IP", ns, name)
	}
	for _, p := range svc.Spec.Ports {
		if match(p) {
			return net.JoinHostPort(ip, strconv.Itoa(int(p.Port))), nil
		}
	}
	return "", fmt.Errorf("service %s/%s has no port %s", ns, name, what)
}

// servingAnswers is how many requests in one try must all answer 2xx.
const servingAnswers = 5

// WaitServing waits until url answers 2xx servingAnswers times in one
// try, the requests sent at once: each may take a few seconds (some apps
// under test work that long), and one slow answer then costs one wait,
// not five. Every request has a connection of its own, closed with its
// answer: a connection nodrop left open would be one more the app has to
// close when it drains (nginx's old workers waited a minute for one on
// which no request ever came). host, when set, is the requests' Host
// (an ingress routes by it).
func WaitServing(ctx context.Context, url, host string, t Timeouts) error {
	transport := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 5 * time.Second, Transport: transport}
	return WaitAnswering(ctx, url, t, func(ctx context.Context) error { return get(ctx, client, url, host) })
}

// WaitServingThroughAPI is WaitServing for a Service port nodrop may not
// reach itself: through the API server's proxy to the Service (which
// sends to one of its ready endpoints), with the kubeconfig alone.
func WaitServingThroughAPI(ctx context.Context, c kubernetes.Interface, ns, svc, port, path string, t Timeouts) error {
	what := fmt.Sprintf("service %s/%s port %s", ns, svc, port)
	return WaitAnswering(ctx, what, t, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.CoreV1().Services(ns).ProxyGet("http", svc, port, path, nil).DoRaw(ctx)
		return err
	})
}

// WaitAnswering waits until ask succeeds servingAnswers times in one try
// (all at once), polling for at most t.Serving; what names the target
// in the error.
func WaitAnswering(ctx context.Context, what string, t Timeouts, ask func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, t.Poll, t.Serving, true, func(ctx context.Context) (bool, error) {
		errs := make([]error, servingAnswers)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = ask(ctx)
			}()
		}
		wg.Wait()
		last = nil
		failed := 0
		for _, err := range errs {
			if err != nil {
				failed++
				last = fmt.Errorf("%d of %d requests failed, e.g. %w", failed, servingAnswers, err)
			}
		}
		return failed == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to serve: %v: %w", what, last, err)
	}
	return nil
}

// get is nil when url answers 2xx.
func get(ctx context.Context, client *http.Client, url, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status)
	}
	return nil
}

// SelectorOf is the label selector of a Deployment's pods.
func SelectorOf(d *appsv1.Deployment) labels.Selector {
	sel, _ := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	return sel
}

// WaitRestartedAndReady waits until a container of the pod has restarted
// in place and the pod is Ready again.
func WaitRestartedAndReady(ctx context.Context, c kubernetes.Interface, ns, pod string, t Timeouts) error {
	last := "not seen yet"
	err := wait.PollUntilContextTimeout(ctx, t.Poll, t.Available, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		restarts := RestartCount(p)
		ready := PodReady(p)
		last = fmt.Sprintf("%d restarts, ready %v", restarts, ready)
		return restarts > 0 && ready, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for pod %s/%s to restart and be ready: %s: %w", ns, pod, last, err)
	}
	return nil
}

// RestartCount is the sum of the restarts of a pod's containers.
func RestartCount(p *corev1.Pod) int32 {
	var n int32
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// RestrictedAsNobody is a container security context that meets the
// restricted Pod Security Standard, running as nobody (65534): for the
// pods nodrop adds beside the user's (its proxy, its load generators).
func RestrictedAsNobody() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](65534),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

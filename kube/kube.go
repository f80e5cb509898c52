// Package kube holds what nodrop does to any Kubernetes cluster: create a
// namespace, deploy objects, wait for observable conditions (and say at
// once when they cannot be met), find the URL load goes to, disrupt a
// Deployment, dump a namespace. Helpers return errors; callers assert.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Timeouts are every wait of the specs, in one place.
type Timeouts struct {
	// Available bounds a new Deployment becoming available.
	Available time.Duration
	// Serving bounds a Service answering after its Deployment is available.
	Serving time.Duration
	// Rollout bounds a rollout, old pods gone included.
	Rollout time.Duration
	// Namespace bounds a namespace's deletion.
	Namespace time.Duration
	// Poll is the interval of every wait.
	Poll time.Duration
}

// DefaultTimeouts suit a single-node kind cluster on a 2-core machine.
var DefaultTimeouts = Timeouts{
	Available: 2 * time.Minute,
	Serving:   30 * time.Second,
	Rollout:   3 * time.Minute,
	Namespace: 2 * time.Minute,
	Poll:      200 * time.Millisecond,
}

// Pod Security Standard levels a namespace can enforce.
const (
	PodSecurityNone       = ""
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
)

// CreateNamespace creates a namespace with a generated name that
// enforces the Pod Security Standard level podSecurity (none if "").
func CreateNamespace(ctx context.Context, c kubernetes.Interface, prefix, podSecurity string) (string, error) {
	labels := map[string]string{"app.kubernetes.io/part-of": "nodrop"}
	if podSecurity != PodSecurityNone {
		labels["pod-security.kubernetes.io/enforce"] = podSecurity
		labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	}
	ns, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("creating namespace: %w", err)
	}
	return ns.Name, nil
}

// DeleteNamespace deletes a namespace and waits until it is gone.
func DeleteNamespace(ctx context.Context, c kubernetes.Interface, name string, t Timeouts) error {
	err := c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", name, err)
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, t.Namespace, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
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

// WaitServing waits until url answers 2xx several times in a row. Each
// request may take a few seconds: some apps under test work that long.
func WaitServing(ctx context.Context, url string, t Timeouts) error {
	client := &http.Client{Timeout: 5 * time.Second}
	streak := 0
	var last error
	err := wait.PollUntilContextTimeout(ctx, t.Poll, t.Serving, true, func(ctx context.Context) (bool, error) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				err = errors.New(resp.Status)
			}
		}
		if err != nil {
			streak, last = 0, err
			return false, nil
		}
		streak++
		return streak >= 5, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to serve: %v: %w", url, last, err)
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

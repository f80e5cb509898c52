package chaos

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nodrop-dev/nodrop/scenario"
)

func node(name string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}
}

func podOn(ns, name, node string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// A drain cordons the node, evicts what kubectl drain evicts (not a
// DaemonSet's pod, not a static pod, nothing on other nodes), asks again
// while a PodDisruptionBudget refuses, and its undo uncordons the node.
func TestDrainEvictsLikeKubectlDrain(t *testing.T) {
	controlPlane := corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}
	c := fake.NewClientset(
		node("cp", controlPlane), node("w1"), node("w2"),
		podOn("app", "web-a", "w1"), podOn("app", "web-b", "w2"),
		podOn("kube-system", "coredns-x", "w1"),
		podOn("kube-system", "kube-proxy-x", "w1", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "kube-proxy"}}
		}),
		podOn("kube-system", "etcd-w1", "w1", func(p *corev1.Pod) {
			p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
		}),
	)
	var mu sync.Mutex
	asked := map[string]int{}
	c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		name := a.(k8stesting.CreateAction).GetObject().(interface{ GetName() string }).GetName()
		mu.Lock()
		defer mu.Unlock()
		asked[name]++
		if name == "web-a" && asked[name] < 3 { // the budget refuses twice
			return true, nil, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
		}
		return true, nil, nil
	})
	in, err := drain(context.Background(), c, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if asked["web-a"] != 3 || asked["coredns-x"] != 1 || len(asked) != 2 {
		t.Errorf("evictions asked %v; want web-a three times (refused twice), coredns-x once, nothing else", asked)
	}
	if in.On != "node w1, 2 pods evicted" {
		t.Errorf("on %q", in.On)
	}
	w1, _ := c.CoreV1().Nodes().Get(context.Background(), "w1", metav1.GetOptions{})
	if !w1.Spec.Unschedulable || w1.Annotations[cordonedBy] == "" {
		t.Errorf("w1 not cordoned by nodrop: %+v", w1.Spec)
	}
	if err := in.Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	w1, _ = c.CoreV1().Nodes().Get(context.Background(), "w1", metav1.GetOptions{})
	if w1.Spec.Unschedulable {
		t.Error("w1 still cordoned after the undo")
	}
}

// A node left cordoned by a killed run is uncordoned by the next cluster
// up; a node someone else cordoned is left alone.
func TestUncordonOnlyWhatADrainLeft(t *testing.T) {
	mine := node("w1")
	mine.Spec.Unschedulable, mine.Annotations = true, map[string]string{cordonedBy: "true"}
	theirs := node("w2")
	theirs.Spec.Unschedulable = true
	c := fake.NewClientset(mine, theirs)
	got, err := Uncordon(context.Background(), c)
	if err != nil || len(got) != 1 || got[0] != "w1" {
		t.Fatalf("uncordoned %v, %v; want [w1]", got, err)
	}
	w2, _ := c.CoreV1().Nodes().Get(context.Background(), "w2", metav1.GetOptions{})
	if !w2.Spec.Unschedulable {
		t.Error("w2, cordoned by someone else, was uncordoned")
	}
}

// Draining the only schedulable node is bad input: its pods have nowhere
// to go, and the rollout would hang.
func TestDrainOfTheOnlyNodeIsBadInput(t *testing.T) {
	c := fake.NewClientset(node("solo"), podOn("app", "web-a", "solo"))
	_, err := drain(context.Background(), c, "solo")
	if !errors.Is(err, scenario.ErrBadInput) || !strings.Contains(err.Error(), "several nodes") {
		t.Fatalf("err = %v, want bad input", err)
	}
	n, _ := c.CoreV1().Nodes().Get(context.Background(), "solo", metav1.GetOptions{})
	if n.Spec.Unschedulable {
		t.Error("the node was cordoned anyway")
	}
}

// A kube-proxy restart deletes its DaemonSet's pods and ends when a new
// one is ready on every node that had one; a cluster without kube-proxy
// is bad input.
func TestRestartKubeProxy(t *testing.T) {
	ready := func(p *corev1.Pod) {
		p.Labels = map[string]string{"k8s-app": "kube-proxy"}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-proxy"}}}}
	c := fake.NewClientset(ds, podOn("kube-system", "kube-proxy-a", "n1", ready), podOn("kube-system", "kube-proxy-b", "n2", ready), podOn("kube-system", "coredns", "n1"))
	in, err := restartKubeProxy(context.Background(), c)
	if err != nil || in.On != "2 pods deleted" {
		t.Fatalf("inject: %+v, %v", in, err)
	}
	left, _ := c.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	if len(left.Items) != 1 || left.Items[0].Name != "coredns" {
		t.Fatalf("left %v, want only coredns", left.Items)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := in.Undo(ctx); err == nil || !strings.Contains(err.Error(), "n1, n2") {
		t.Errorf("undo with nothing new: %v, want n1 and n2 named", err)
	}
	for _, p := range []*corev1.Pod{podOn("kube-system", "kube-proxy-c", "n1", ready), podOn("kube-system", "kube-proxy-d", "n2", ready)} {
		if _, err := c.CoreV1().Pods("kube-system").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Undo(context.Background()); err != nil {
		t.Errorf("undo with new pods: %v", err)
	}
	if _, err := restartKubeProxy(context.Background(), fake.NewClientset()); !errors.Is(err, scenario.ErrBadInput) {
		t.Errorf("no kube-proxy: %v, want bad input", err)
	}
}

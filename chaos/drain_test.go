package chaos

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

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

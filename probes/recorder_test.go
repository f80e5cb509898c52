package probes

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// A pod labelled as one of nodrop's observers (a load generator), and
// the events about it and its Job, stay off the timeline; the pods
// under test are on it.
func TestRecorderLeavesObserversOffTheTimeline(t *testing.T) {
	ctx := context.Background()
	c := fake.NewSimpleClientset()
	r, err := Start(ctx, c, "run")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	pod := func(name string, labels map[string]string, owner string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "run", Labels: labels}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "Job", Name: owner}}
		}
		return p
	}
	for _, p := range []*corev1.Pod{
		pod("web-1", map[string]string{"app": "web"}, ""),
		pod("nodrop-load-abc-1", map[string]string{ObserverLabel: "load-generator"}, "nodrop-load-abc"),
	} {
		if _, err := c.CoreV1().Pods("run").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && len(r.Events()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	for _, name := range []string{"nodrop-load-abc-1", "nodrop-load-abc"} {
		e := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name + ".1", Namespace: "run"}, InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: name},
			Reason: "Started", Message: "Container started", LastTimestamp: metav1.Now()}
		if name == "nodrop-load-abc" {
			e.InvolvedObject.Kind = "Job"
		}
		if _, err := c.CoreV1().Events("run").Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	var web int
	for _, e := range r.Events() {
		switch e.Pod {
		case "web-1":
			web++
		case "nodrop-load-abc-1", "nodrop-load-abc":
			t.Errorf("an observer on the timeline: %s", e)
		}
		if e.Kind == KubeEvent && e.Pod == "" {
			t.Errorf("the observer's Job on the timeline: %s", e)
		}
	}
	if web == 0 {
		t.Errorf("the pod under test is not on the timeline: %v", r.Events())
	}
}

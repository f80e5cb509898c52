package chaos

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodrop-dev/nodrop/scenario"
)

// scripts is a NodeShell that records scripts and fails those holding
// failOn.
type scripts struct {
	ran    []string
	failOn string
}

func (s *scripts) Nodes(context.Context) ([]string, error) { return []string{"n"}, nil }
func (s *scripts) Run(_ context.Context, node, script string) (string, error) {
	s.ran = append(s.ran, script)
	if s.failOn != "" && strings.Contains(script, s.failOn) {
		return "", errors.New("no such target")
	}
	return "", nil
}

// The rules go first in FORWARD with nodrop's comment, all or none, and
// their undo deletes each.
func TestForwardRules(t *testing.T) {
	s := &scripts{}
	undo, err := forwardRules(context.Background(), s, "n", "-d 10.0.0.7 -j DROP", "-s 10.0.0.7 -j NFQUEUE --queue-num 1")
	if err != nil {
		t.Fatal(err)
	}
	want := "iptables -I FORWARD -d 10.0.0.7 -m comment --comment nodrop-fault -j DROP && iptables -I FORWARD -s 10.0.0.7 -m comment --comment nodrop-fault -j NFQUEUE --queue-num 1"
	if s.ran[0] != want {
		t.Errorf("added with %q, want %q", s.ran[0], want)
	}
	if err := undo(context.Background()); err != nil || !strings.HasPrefix(s.ran[1], "iptables -D FORWARD -d 10.0.0.7 -m comment --comment nodrop-fault -j DROP; iptables -D") {
		t.Errorf("undone with %q, %v", s.ran[1], err)
	}
	failing := &scripts{failOn: "-I"}
	if _, err := forwardRules(context.Background(), failing, "n", "-d 10.0.0.7 -j DROP"); err == nil || len(failing.ran) != 2 || !strings.Contains(failing.ran[1], "-D") {
		t.Errorf("a rule that cannot be added: %v, ran %q; want an error and the rules deleted", err, failing.ran)
	}
}

// A pod's packet loss matches its IP both ways and names the pod (the
// loss bound follows it); a node's matches its interface both ways and
// names no pod, only how many of the Deployment's it holds.
func TestPacketLossStrikesAPodOrItsNode(t *testing.T) {
	ready := func(ip string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "web"}
			p.Status.PodIP = ip
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
	}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	c := fake.NewClientset(dep, podOn("ns", "web-a", "w1", ready("10.0.0.7")), podOn("ns", "web-b", "w1", ready("10.0.0.8")), podOn("ns", "web-c", "w2", ready("10.0.1.9")))
	for _, tc := range []struct {
		fault          scenario.Fault
		pod, on, match string
	}{
		{PacketLoss(0.05, time.Second, DefaultAt), "web-a", "node w1", "-d 10.0.0.7 -m statistic --mode random --probability 0.05"},
		{NodePacketLoss(0.05, time.Second, DefaultAt), "", "node w1, 2 of the 3 pods", "-i " + ifaceOf + " -m statistic"},
	} {
		s := &scripts{}
		live := &scenario.Live{Env: scenario.Env{Client: c, Nodes: s}, Namespace: "ns", Deployment: "web"}
		in, err := tc.fault.Inject(context.Background(), live)
		if err != nil {
			t.Fatalf("%s: %v", tc.fault.Name, err)
		}
		if in.Pod != tc.pod || in.On != tc.on || len(s.ran) != 1 || !strings.Contains(s.ran[0], tc.match) {
			t.Errorf("%s: struck %+v with %q; want pod %q on %q matching %q", tc.fault.Name, in, s.ran, tc.pod, tc.on, tc.match)
		}
	}
}

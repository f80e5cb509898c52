package chaos_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		fault, at string
		name      string
		when      scenario.FaultAt
		lasts     time.Duration
	}{
		{"kill-pod", "", "SIGKILL to a serving pod's container", chaos.DefaultAt, 0},
		{"pause-kube-proxy", "", "kube-proxy paused 10s", chaos.DefaultAt, 10 * time.Second},
		{"pause-kube-proxy=3s", "pod-deleting+1s", "kube-proxy paused 3s", scenario.FaultAt{After: probes.PodDeleting, Delay: time.Second}, 3 * time.Second},
		{"kill-pod", "4s", "SIGKILL to a serving pod's container", scenario.FaultAt{Delay: 4 * time.Second}, 0},
		{"crash-pod", "50%", "crash (SIGABRT) of a serving pod's app", scenario.FaultAt{After: probes.PodDeleting, Share: 0.5}, 0},
		{"pause-apiserver=4s", "30%+2s", "API server paused 4s", scenario.FaultAt{After: probes.PodDeleting, Share: 0.3, Delay: 2 * time.Second}, 4 * time.Second},
		{"pause-apiserver", "100%", "API server paused 10s", scenario.FaultAt{After: probes.PodDeleting, Share: 1}, 10 * time.Second},
		{"pause-controller-manager=3s", "", "EndpointSlice updates paused 3s (kube-controller-manager stopped)", chaos.DefaultAt, 3 * time.Second},
		{"kill-pod", "before", "SIGKILL to a serving pod's container", scenario.FaultAt{Before: true}, 0},
		{"packet-loss=5%", "0s", "5% of a pod's packets dropped for 10s", scenario.FaultAt{}, 10 * time.Second},
		{"delay=100ms:50ms/5s", "", "a pod's packets delayed 100ms ±50ms for 5s", chaos.DefaultAt, 5 * time.Second},
		{"node-delay=1.5s:1s/20s", "0s", "a node's packets delayed 1.5s ±1s for 20s", scenario.FaultAt{}, 20 * time.Second},
		{"node-packet-loss=2%", "0s", "2% of a node's packets dropped for 10s", scenario.FaultAt{}, 10 * time.Second},
		{"delay=1.5s", "0s", "a pod's packets delayed 1.5s for 10s", scenario.FaultAt{}, 10 * time.Second},
		{"packet-loss=0.5%/20s", "", "0.5% of a pod's packets dropped for 20s", chaos.DefaultAt, 20 * time.Second},
	} {
		f, err := chaos.Parse(tc.fault, tc.at)
		if err != nil {
			t.Errorf("%s at %q: %v", tc.fault, tc.at, err)
			continue
		}
		if f.Name != tc.name || f.At != tc.when || f.For != tc.lasts || !f.NeedsNodes || f.Mechanism == "" {
			t.Errorf("%s at %q: %+v", tc.fault, tc.at, f)
		}
	}
	for _, tc := range [][2]string{
		{"earthquake", ""}, {"kill-pod=2", ""}, {"pause-kube-proxy=0s", ""}, {"pause-kube-proxy=1h", ""},
		{"crash-pod=1", ""}, {"pause-apiserver=soon", ""}, {"restart-kube-proxy=1s", ""},
		{"packet-loss", ""}, {"packet-loss=5", ""}, {"packet-loss=0%", ""}, {"packet-loss=101%", ""}, {"packet-loss=5%/", ""}, {"packet-loss=5%/0s", ""},
		{"netem=delay:50ms", ""}, {"delay", ""}, {"delay=0s", ""}, {"delay=20s", ""}, {"delay=10ms:20ms", ""}, {"delay=10ms/", ""}, {"delay=10ms:x", ""}, {"node-delay", ""}, {"node-packet-loss=x", ""},
		{"kill-pod", "0%"}, {"kill-pod", "101%"}, {"kill-pod", "x%"}, {"kill-pod", "30%+"}, {"kill-pod", "30%+-1s"},
		{"kill-pod", "pod-deleting1s"}, {"kill-pod", "pod-deleting+x"}, {"kill-pod", "pod-deleting+"}, {"kill-pod", "-1s"}, {"kill-pod", "1s+1s"},
	} {
		if _, err := chaos.Parse(tc[0], tc[1]); !errors.Is(err, chaos.ErrBadFault) {
			t.Errorf("%s at %q: err = %v, want a bad fault", tc[0], tc[1], err)
		}
	}
}

// shell is a NodeShell that answers each script from a table.
type shell struct {
	nodes []string
	ran   []string
	out   func(node, script string) (string, error)
}

func (s *shell) Nodes(context.Context) ([]string, error) { return s.nodes, nil }
func (s *shell) Run(_ context.Context, node, script string) (string, error) {
	s.ran = append(s.ran, node+": "+script)
	return s.out(node, script)
}

// Resume says what it found stopped, where, and only that.
func TestResumeNamesWhatItResumed(t *testing.T) {
	s := &shell{nodes: []string{"a", "b"}, out: func(node, _ string) (string, error) {
		if node == "b" {
			return "kube-proxy\nkube-apiserver\n", nil
		}
		return "", nil
	}}
	got, err := chaos.Resume(context.Background(), s)
	if err != nil || strings.Join(got, ", ") != "kube-proxy on b, kube-apiserver on b" {
		t.Fatalf("resumed %q, %v; want kube-proxy and kube-apiserver on b", got, err)
	}
	if len(s.ran) != 2 || !strings.Contains(s.ran[0], "kill -CONT") {
		t.Errorf("ran %q", s.ran)
	}
}

// A pause that fails on a node resumes the nodes already paused, and only
// those.
func TestPauseUndoesWhatItDidWhenANodeFails(t *testing.T) {
	s := &shell{nodes: []string{"a", "b", "c"}, out: func(node, script string) (string, error) {
		if node == "b" && strings.Contains(script, "-STOP") {
			return "", errors.New("exit status 137")
		}
		if strings.Contains(script, "-STOP") {
			return "stopped\n", nil
		}
		return "", nil
	}}
	f := chaos.PauseKubeProxy(time.Second, chaos.DefaultAt)
	_, err := f.Inject(context.Background(), &scenario.Live{Env: scenario.Env{Nodes: s}})
	if err == nil {
		t.Fatal("no error with a node that failed")
	}
	want := []string{"a: -STOP", "b: -STOP", "a: -CONT"}
	if len(s.ran) != len(want) {
		t.Fatalf("ran %q, want %v", s.ran, want)
	}
	for i, w := range want {
		node, sig, _ := strings.Cut(w, ": ")
		if !strings.HasPrefix(s.ran[i], node+":") || !strings.Contains(s.ran[i], sig) {
			t.Errorf("step %d: ran %q, want %s", i, s.ran[i], w)
		}
	}
}

// The API server runs on the control plane only: the pause stops it
// there, leaves the other nodes alone, resumes it there, and fails when
// no node runs one.
func TestPauseAPIServerWhereItRuns(t *testing.T) {
	s := &shell{nodes: []string{"cp", "w1"}, out: func(node, script string) (string, error) {
		if node == "cp" && strings.Contains(script, "-STOP -x kube-apiserver") {
			return "stopped\n", nil
		}
		return "", nil
	}}
	in, err := chaos.PauseAPIServer(time.Second, chaos.DefaultAt).Inject(context.Background(), &scenario.Live{Env: scenario.Env{Nodes: s}})
	if err != nil {
		t.Fatal(err)
	}
	s.ran = nil
	if err := in.Undo(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(s.ran) != 1 || !strings.HasPrefix(s.ran[0], "cp: pkill -CONT -x kube-apiserver ") {
		t.Errorf("undo ran %q, want only the control plane resumed", s.ran)
	}

	none := &shell{nodes: []string{"w1"}, out: func(string, string) (string, error) { return "", nil }}
	if _, err := chaos.PauseAPIServer(time.Second, chaos.DefaultAt).Inject(context.Background(), &scenario.Live{Env: scenario.Env{Nodes: none}}); err == nil || !strings.Contains(err.Error(), "no kube-apiserver process") {
		t.Errorf("err = %v, want no kube-apiserver process on any node", err)
	}
}

// pauser is a shell whose nodes can be paused.
type pauser struct {
	*shell
	paused map[string]bool
}

func (p *pauser) PauseNode(_ context.Context, node string, paused bool) error {
	p.paused[node] = paused
	return nil
}

func (p *pauser) PausedNodes(context.Context) ([]string, error) {
	var out []string
	for n, ok := range p.paused {
		if ok {
			out = append(out, n)
		}
	}
	return out, nil
}

// Resume thaws a paused node before it looks for stopped processes (a
// paused node runs no script).
func TestResumeThawsAPausedNode(t *testing.T) {
	p := &pauser{shell: &shell{nodes: []string{"w1"}, out: func(string, string) (string, error) { return "", nil }}, paused: map[string]bool{"w1": true}}
	got, err := chaos.Resume(context.Background(), p)
	if err != nil || strings.Join(got, ",") != "node w1" || p.paused["w1"] {
		t.Fatalf("resumed %q, %v; paused %v", got, err, p.paused)
	}
}

// pkill -x matches the kernel's 15-byte name of a process: the pause of
// kube-controller-manager asks for kube-controller, and Resume names it
// whole.
func TestPauseMatchesTheKernelsName(t *testing.T) {
	s := &shell{nodes: []string{"cp"}, out: func(_, script string) (string, error) {
		if strings.Contains(script, "pkill -STOP -x kube-controller;") {
			return "stopped\n", nil
		}
		return "", nil
	}}
	if _, err := chaos.PauseControllerManager(time.Second, chaos.DefaultAt).Inject(context.Background(), &scenario.Live{Env: scenario.Env{Nodes: s}}); err != nil {
		t.Fatalf("inject: %v (ran %q)", err, s.ran)
	}
	s.ran = nil
	if _, err := chaos.Resume(context.Background(), s); err != nil || !strings.Contains(s.ran[0], "pgrep -x kube-controller 2>/dev/null); do") || !strings.Contains(s.ran[0], "echo kube-controller-manager;") {
		t.Errorf("resume ran %q, %v", s.ran, err)
	}
}

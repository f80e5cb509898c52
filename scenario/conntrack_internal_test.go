package scenario

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// oneNode answers every script with the same output, and records them.
type oneNode struct {
	out     string
	err     error
	scripts []string
}

func (n *oneNode) Nodes(context.Context) ([]string, error) { return []string{"node-1"}, nil }
func (n *oneNode) Run(_ context.Context, _, script string) (string, error) {
	n.scripts = append(n.scripts, script)
	return n.out, n.err
}

// A node's conntrack table as `conntrack -L` prints it: the attempt from
// port 41234 still unreplied to a pod's address, a later connection
// from 41300 closed.
const conntrackTable = `tcp      6 117 SYN_SENT src=172.18.0.1 dst=172.18.0.2 sport=41234 dport=30416 [UNREPLIED] src=10.244.0.37 dst=10.244.0.1 sport=8080 dport=41234 mark=0 use=1
tcp      6 8 CLOSE src=172.18.0.1 dst=172.18.0.2 sport=41300 dport=30416 src=10.244.0.90 dst=10.244.0.1 sport=8080 dport=41300 [ASSURED] mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 2 flow entries have been shown.
`

// recorderWithPod is a recorder of namespace ns that has seen one pod,
// web-old at 10.244.0.37 (the address the recorded conntrack lines send
// to); it stops with the test.
func recorderWithPod(ctx context.Context, t *testing.T) *probes.Recorder {
	t.Helper()
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-old", Namespace: "ns"}, Status: corev1.PodStatus{PodIP: "10.244.0.37"}}
	rec, err := probes.Start(ctx, fake.NewClientset(old), "ns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Stop)
	for deadline := time.Now().Add(5 * time.Second); rec.PodWithIP("10.244.0.37") == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the recorder never saw the pod's address")
		}
	}
	return rec
}

func TestParseConntrack(t *testing.T) {
	got := parseConntrack(conntrackTable)
	want := []conntrackEntry{
		{State: "SYN_SENT", Sport: 41234, Dport: 30416, SentTo: "10.244.0.37", Unreplied: true},
		{State: "CLOSE", Sport: 41300, Dport: 30416, SentTo: "10.244.0.90"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// Each unanswered attempt is looked up by its client port, and the
// timeline says where the node sent it, by pod name where the run had
// that pod; a loss of another kind is not looked up.
func TestTraceUnansweredSaysWhereAttemptsWent(t *testing.T) {
	ctx := context.Background()
	rec := recorderWithPod(ctx, t)
	at := time.Now()
	target := "http://172.18.0.2:30416/"
	r := &loadgen.Report{Losses: []loadgen.Loss{
		{At: at, Class: loadgen.Timeout, NoConnection: true, LocalPort: 41234, Target: target},
		{At: at.Add(time.Second), Class: loadgen.Timeout, NoConnection: true, LocalPort: 41300, Target: target},
		{At: at.Add(2 * time.Second), Class: loadgen.Timeout, NoConnection: true, LocalPort: 41999, Target: target},
		{At: at, Class: loadgen.Refused, NoConnection: true, LocalPort: 42000, Target: target},
		{At: at, Class: loadgen.Timeout, LocalPort: 42001, Target: target}, // had a connection
	}}
	node := &oneNode{out: conntrackTable}
	events := traceUnanswered(ctx, node, rec, []*loadgen.Report{r})
	if len(events) != 3 {
		t.Fatalf("want 3 events, got %+v", events)
	}
	for _, want := range []struct {
		i    int
		text string
	}{
		{0, "client port 41234: sent to 10.244.0.37 (pod web-old), entry SYN_SENT unreplied"},
		{1, "client port 41300: sent to 10.244.0.90 (no pod of this run), entry CLOSE (perhaps a later connection"},
		{2, "client port 41999: no entry for it on any node"},
	} {
		e := events[want.i]
		if e.Kind != probes.Conntrack || !strings.Contains(e.Detail, want.text) {
			t.Errorf("event %d: got %q, want %q", want.i, e.Detail, want.text)
		}
	}
	if !events[0].At.Equal(at) {
		t.Errorf("the event is not at its loss: %v", events[0].At)
	}
	if len(node.scripts) != 1 || strings.Count(node.scripts[0], "conntrack -L") != 3 || !strings.Contains(node.scripts[0], "--orig-port-src 41234 --orig-port-dst 30416") {
		t.Errorf("scripts: %q", node.scripts)
	}

	failing := &oneNode{err: errors.New("exec failed")}
	events = traceUnanswered(ctx, failing, rec, []*loadgen.Report{r})
	if len(events) != 3 || !strings.Contains(events[0].Detail, "not looked up: exec failed") {
		t.Errorf("a failed lookup is not said: %+v", events)
	}
	if events := traceUnanswered(ctx, node, rec, []*loadgen.Report{{}}); events != nil {
		t.Errorf("no loss, yet %+v", events)
	}
}

package scenario

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// scriptedNode answers its scripts in turn, and records them.
type scriptedNode struct {
	outs    []string
	scripts []string
}

func (n *scriptedNode) Nodes(context.Context) ([]string, error) { return []string{"node-1"}, nil }
func (n *scriptedNode) Run(_ context.Context, _, script string) (string, error) {
	n.scripts = append(n.scripts, script)
	out := n.outs[0]
	n.outs = n.outs[1:]
	return out, nil
}

// What `conntrack -E -e NEW -o timestamp` prints: two connections from
// the client, one to a pod of the run and one to an address it never had.
const newConnEvents = `[1795716230.839407]	    [NEW] tcp      6 120 SYN_SENT src=172.18.0.1 dst=172.18.0.2 sport=41234 dport=30416 [UNREPLIED] src=10.244.0.37 dst=10.244.0.1 sport=8080 dport=41234
[1795716231.500000]	    [NEW] tcp      6 120 SYN_SENT src=172.18.0.1 dst=172.18.0.2 sport=41300 dport=30416 [UNREPLIED] src=10.244.0.90 dst=10.244.0.1 sport=8080 dport=41300
conntrack v1.4.7 (conntrack-tools): 2 flow events have been shown.
`

func TestWatchNewConnsStartsAndStopsOnEveryNode(t *testing.T) {
	ctx := context.Background()
	node := &scriptedNode{outs: []string{"4242\n", newConnEvents}}
	w, err := watchNewConns(ctx, node, 30416, "ns-0")
	if err != nil {
		t.Fatal(err)
	}
	conns, err := w.stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(node.scripts) != 2 || !strings.Contains(node.scripts[0], "conntrack -E -e NEW -p tcp --orig-port-dst 30416") || !strings.Contains(node.scripts[1], "kill -INT 4242") || !strings.Contains(node.scripts[1], "rm -f /tmp/nodrop-newconns-ns-0") {
		t.Errorf("scripts: %q", node.scripts)
	}
	want := newConn{At: time.Unix(1795716230, 839407000), Node: "node-1", Sport: 41234, SentTo: "10.244.0.37"}
	if len(conns) != 2 || conns[0] != want || conns[1].Sport != 41300 {
		t.Errorf("got %+v", conns)
	}
	if again, err := w.stop(ctx); err != nil || len(again) != 0 || len(node.scripts) != 2 {
		t.Errorf("a second stop ran scripts again: %+v %v %q", again, err, node.scripts)
	}
	if _, err := watchNewConns(ctx, &scriptedNode{outs: []string{"sh: conntrack: not found\n", ""}}, 30416, "x"); err == nil {
		t.Error("a watch that did not start gave no error")
	}
}

// A refused or unanswered attempt of a kept-alive load is placed where the
// node sent it: the first new connection from its port from when it was
// sent until its timeout; one no node took in was turned away before.
func TestTraceNewConnsSaysWhereAttemptsWent(t *testing.T) {
	ctx := context.Background()
	rec := recorderWithPod(ctx, t)
	conns := parseNewConns("node-1", newConnEvents)
	sent := time.Unix(1795716230, 830000000)
	r := &loadgen.Report{Client: loadgen.Client{TimeoutMs: 2000}, Losses: []loadgen.Loss{
		{At: sent, Class: loadgen.Refused, NoConnection: true, LocalPort: 41234},
		{At: sent.Add(-10 * time.Second), Class: loadgen.Timeout, NoConnection: true, LocalPort: 41300}, // long before its port's entry
		{At: sent, Class: loadgen.Reset, LocalPort: 41300},                                              // had a connection
	}}
	events := traceNewConns(conns, rec, r, false)
	if len(events) != 2 {
		t.Fatalf("want 2 events, got %+v", events)
	}
	if e := events[0]; e.Kind != probes.Conntrack || !e.At.Equal(sent) || !strings.Contains(e.Detail, "refused attempt from client port 41234: the node sent it to 10.244.0.37 (pod web-old), 0.009s after") {
		t.Errorf("got %+v", e)
	}
	if e := events[1]; !strings.Contains(e.Detail, "unanswered attempt from client port 41300: no node took it in") {
		t.Errorf("got %+v", e)
	}
}

package scenario

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// A refused or unanswered connection attempt of a kept-alive load is rare
// and says much: a kept-alive client opens a connection only when one of
// its own ends, so an attempt that fails went somewhere no ready pod is.
// Looked up after the load, its conntrack entry is gone (a refused one
// is kept 10 s), so while a kept-alive load runs nodrop follows, on every
// node, the connections the node's conntrack table takes in as new to the
// load's port (`conntrack -E`): which pod each client port was sent to,
// and when. Fresh connections are not followed: a thousand a second
// would cost the generator what the watch is meant to explain.

// newConn is one connection a node took in as new.
type newConn struct {
	At     time.Time
	Node   string
	Sport  int    // the client's port
	SentTo string // the address the node sent it to (the reply's source)
}

// newConnWatch is a `conntrack -E` running on each node, writing to a
// file there.
type newConnWatch struct {
	nodes NodeShell
	port  int
	file  string
	pids  map[string]int // by node
}

// watchNewConns starts following the connections to port on every node.
// The watch is evidence: if it cannot start, the run goes on without it.
func watchNewConns(ctx context.Context, nodes NodeShell, port int, tag string) (*newConnWatch, error) {
	names, err := nodes.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	w := &newConnWatch{nodes: nodes, port: port, file: "/tmp/nodrop-newconns-" + tag, pids: map[string]int{}}
	script := fmt.Sprintf("conntrack -E -e NEW -p tcp --orig-port-dst %d -o timestamp > %s 2>&1 & echo $!", port, w.file)
	for _, node := range names {
		out, err := nodes.Run(ctx, node, script)
		if err != nil {
			w.stop(ctx)
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			w.stop(ctx)
			return nil, fmt.Errorf("starting conntrack -E on %s: %q", node, out)
		}
		w.pids[node] = pid
	}
	return w, nil
}

// stop ends the watch on every node, removes its files, and returns what
// each node took in, in the order seen.
func (w *newConnWatch) stop(ctx context.Context) ([]newConn, error) {
	var conns []newConn
	var errs []string
	pids := w.pids
	w.pids = nil // stopped once
	for node, pid := range pids {
		// conntrack prints what it holds on SIGINT and exits.
		out, err := w.nodes.Run(ctx, node, fmt.Sprintf("kill -INT %d 2>/dev/null; sleep 0.2; cat %s; rm -f %s", pid, w.file, w.file))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		conns = append(conns, parseNewConns(node, out)...)
	}
	if len(errs) > 0 {
		return conns, fmt.Errorf("stopping conntrack -E: %s", strings.Join(errs, "; "))
	}
	return conns, nil
}

// parseNewConns reads `conntrack -E -o timestamp` lines: "[SEC.USEC]
// [NEW] tcp 6 120 SYN_SENT src=A dst=B sport=P dport=N [UNREPLIED]
// src=POD ...".
func parseNewConns(node, out string) []newConn {
	var conns []newConn
	for _, line := range strings.Split(out, "\n") {
		stamp, rest, ok := strings.Cut(strings.TrimSpace(line), "]")
		if !ok || !strings.HasPrefix(stamp, "[") {
			continue
		}
		sec, err := strconv.ParseFloat(stamp[1:], 64)
		if err != nil {
			continue
		}
		rest = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "[NEW]"))
		entries := parseConntrack(rest)
		if len(entries) != 1 {
			continue
		}
		whole, frac := math.Modf(sec)
		conns = append(conns, newConn{
			At:     time.Unix(int64(whole), int64(math.Round(frac*1e6))*1e3),
			Node:   node,
			Sport:  entries[0].Sport,
			SentTo: entries[0].SentTo,
		})
	}
	return conns
}

// traceNewConns says, for each connection attempt of r that was refused or
// went unanswered, where the node sent it, as a timeline event at the
// loss's time: the first new connection from its client port taken in
// from when it was sent until its timeout. An attempt no node took in
// never got past the node's filter (kube-proxy rejects a connection to a
// Service with no ready endpoint before its entry is confirmed).
func traceNewConns(conns []newConn, rec *probes.Recorder, r *loadgen.Report, multiNode bool) []probes.Event {
	// The node stamps an entry when its SYN passes; the client stamps the
	// request when it is sent, just before it dials: allow for the clocks'
	// read order.
	const early = 50 * time.Millisecond
	timeout := time.Duration(r.Client.TimeoutMs * float64(time.Millisecond))
	var events []probes.Event
	for _, l := range r.Losses {
		if !l.NoConnection || l.LocalPort == 0 || (l.Class != loadgen.Refused && l.Class != loadgen.Timeout) {
			continue
		}
		head := fmt.Sprintf("%s attempt from client port %d: ", attemptWord(l.Class), l.LocalPort)
		var found *newConn
		for i, c := range conns {
			if c.Sport == l.LocalPort && !c.At.Before(l.At.Add(-early)) && !c.At.After(l.At.Add(timeout)) {
				found = &conns[i]
				break
			}
		}
		e := probes.Event{At: l.At, Kind: probes.Conntrack, Detail: head + notTakenIn + ": it matched an entry a node already held for that client port (an earlier connection's, which a new SYN follows to where the earlier one went), or it was turned away before it was tracked (kube-proxy rejects a connection to a Service with no ready endpoint)"}
		if found != nil {
			e.Pod = rec.PodWithIP(found.SentTo)
			e.Detail = head + fmt.Sprintf("the node sent it to %s, %.3fs after the request was sent", addressOf(found.SentTo, e.Pod), found.At.Sub(l.At).Seconds())
			if multiNode {
				e.Detail += " (" + found.Node + ")"
			}
		}
		events = append(events, e)
	}
	return events
}

// notTakenIn says of a traced attempt that no node made a new entry for it.
const notTakenIn = "no node took it in as a new connection"

func attemptWord(c loadgen.Class) string {
	if c == loadgen.Refused {
		return "refused"
	}
	return "unanswered"
}

// nodePort is the port of a load's target URL (0 if it has none).
func nodePort(target string) int {
	u, err := url.Parse(target)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

package scenario

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// maxTraced bounds how many unanswered connection attempts of a load are
// looked up in the nodes' conntrack tables: enough to say where a
// handful went; a flood of them has its cause on the timeline already.
const maxTraced = 6

// traceTimeout bounds the lookup: it is evidence, never worth holding a
// run's verdict up.
const traceTimeout = 20 * time.Second

// conntrackEntry is one line of `conntrack -L` for a TCP connection.
type conntrackEntry struct {
	State     string // SYN_SENT, CLOSE, ...
	Sport     int    // the client's port
	Dport     int    // the NodePort
	SentTo    string // the reply's source: where the node sent it
	Unreplied bool
}

// parseConntrack reads `conntrack -L -p tcp` output: "tcp 6 117
// SYN_SENT src=A dst=B sport=P dport=N [UNREPLIED] src=POD dst=B'
// sport=T dport=P' ...".
func parseConntrack(out string) []conntrackEntry {
	var entries []conntrackEntry
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "tcp" {
			continue
		}
		e := conntrackEntry{State: f[3]}
		srcs := 0
		for _, w := range f[4:] {
			k, v, ok := strings.Cut(w, "=")
			switch {
			case w == "[UNREPLIED]":
				e.Unreplied = true
			case !ok:
			case k == "src":
				srcs++
				if srcs == 2 {
					e.SentTo = v
				}
			case k == "sport" && srcs == 1:
				e.Sport, _ = strconv.Atoi(v)
			case k == "dport" && srcs == 1:
				e.Dport, _ = strconv.Atoi(v)
			}
		}
		if e.Sport != 0 && e.SentTo != "" {
			entries = append(entries, e)
		}
	}
	return entries
}

// traceUnanswered looks up, on every node, the conntrack entry of each
// connection attempt that went unanswered (up to maxTraced per load), by
// the client port it was sent from, and returns what it found as
// timeline events at the loss's time: which address the node sent the
// SYN to, and which pod had it. An entry outlives its attempt (120 s in
// SYN_SENT), so it still says where the attempt went. Whatever fails
// here is said in the event, and the run goes on.
func traceUnanswered(ctx context.Context, nodes NodeShell, rec *probes.Recorder, reports []*loadgen.Report) []probes.Event {
	type want struct {
		loss  loadgen.Loss
		nport int
	}
	var wants []want
	for _, r := range reports {
		if r == nil {
			continue
		}
		var unanswered []loadgen.Loss
		for _, l := range r.Losses {
			if l.Class == loadgen.Timeout && l.NoConnection && l.LocalPort != 0 {
				unanswered = append(unanswered, l)
			}
		}
		if len(unanswered) > maxTraced {
			// The first and the last: a lone late loss is the one
			// nothing else on the timeline explains.
			unanswered = append(unanswered[:maxTraced/2], unanswered[len(unanswered)-maxTraced/2:]...)
		}
		for _, l := range unanswered {
			u, err := url.Parse(l.Target)
			if err != nil {
				continue
			}
			p, err := strconv.Atoi(u.Port())
			if err != nil {
				continue
			}
			wants = append(wants, want{l, p})
		}
	}
	if len(wants) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, traceTimeout)
	defer cancel()
	var script strings.Builder
	for _, w := range wants {
		fmt.Fprintf(&script, "conntrack -L -p tcp --orig-port-src %d --orig-port-dst %d 2>/dev/null;", w.loss.LocalPort, w.nport)
	}
	script.WriteString("true")
	names, err := nodes.Nodes(ctx)
	found := map[[2]int][]string{} // (client port, NodePort) → what each node held
	for _, node := range names {
		out, rerr := nodes.Run(ctx, node, script.String())
		if rerr != nil {
			err = rerr
			continue
		}
		for _, e := range parseConntrack(out) {
			k := [2]int{e.Sport, e.Dport}
			found[k] = append(found[k], describeEntry(node, e, rec.PodWithIP(e.SentTo), len(names) > 1))
		}
	}
	var events []probes.Event
	for _, w := range wants {
		head := fmt.Sprintf("unanswered attempt from client port %d: ", w.loss.LocalPort)
		var detail string
		switch held := found[[2]int{w.loss.LocalPort, w.nport}]; {
		case len(held) > 0:
			sort.Strings(held)
			detail = head + strings.Join(held, "; ")
		case err != nil:
			detail = head + "not looked up: " + err.Error()
		default:
			detail = head + noEntry + ": dropped before the node tracked it (kube-proxy drops connections to a Service with no ready endpoint), or its entry expired or was replaced by a later connection from that port"
		}
		events = append(events, probes.Event{At: w.loss.At, Kind: probes.Conntrack, Detail: detail})
	}
	return events
}

// noEntry: no node held an entry for a lost connection attempt once the
// load was over. closedEntry: the entry a node held for it is one a
// refused or reset connection leaves (CLOSE).
const (
	noEntry     = "no entry for it on any node"
	closedEntry = "entry CLOSE"
)

// describeEntry says where a node's entry sent the connection, in the
// namespace's terms.
func describeEntry(node string, e conntrackEntry, pod string, nameNode bool) string {
	s := "sent to " + addressOf(e.SentTo, pod) + ", entry " + e.State
	if e.Unreplied {
		s += " unreplied"
	}
	if e.State != "SYN_SENT" {
		s += " (perhaps a later connection from the same port)"
	}
	if nameNode {
		s += " on " + node
	}
	return s
}

// addressOf names an address by its pod, if the run had one there.
func addressOf(ip, pod string) string {
	if pod == "" {
		return ip + " (no pod of this run)"
	}
	return ip + " (pod " + pod + ")"
}

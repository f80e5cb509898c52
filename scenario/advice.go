package scenario

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// Advise says, for each episode of losses, what happened then and what
// to change, in the terms of the user's manifest. It reads the measured
// timeline, not a text per configuration: the moment an episode starts
// relative to a pod's deletion, its container's exit and the endpoints'
// changes names the mechanism.
func Advise(r *loadgen.Report, events []probes.Event) []string {
	var out []string
	eps := probes.Episodes(probes.Bursts(r, events), EpisodeGap)
	stale := staleConntrack(eps)
	for i, ep := range eps {
		if st := stale[i]; st.After.IsZero() && i > 0 && reusedPorts(r, ep) {
			out = append(out, fmt.Sprintf("%d lost (%s) at +%.1fs = connection attempts from client ports whose earlier attempts were refused, reset or went unanswered: "+
				"the conntrack entry of a connection the server refused or reset is kept %s and not reopened for a new SYN from its port, so the port's next connection goes back to that pod (refused again while it lives, unanswered once it is gone). "+
				"These follow from the earlier losses: fix those and these go too.",
				ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds(), CloseTimeout))
			continue
		}
		if st := stale[i]; !st.After.IsZero() && lastBefore(events, ep.Start, probes.PodGone, DataPlaneLag) == nil {
			if st.Refused {
				out = append(out, fmt.Sprintf("%d lost (%s) at +%.1fs, %.1fs after the last refusals = connection attempts that reused the source port of a refused connection: "+
					"the kernel keeps a refused connection's conntrack entry for %s and lets a SYN that reuses its port follow it to the pod that refused it, which no longer answers. "+
					"These follow from the refusals: fix those and these go too.",
					ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds(), ep.Start.Sub(st.After).Seconds(), CloseTimeout))
				continue
			}
			out = append(out, fmt.Sprintf("%d lost (%s) at +%.1fs, %.1fs after the last timeouts = connections that reused the source port of an earlier attempt sent to a gone pod: "+
				"kube-proxy deletes no TCP conntrack entry when an endpoint goes, and an unanswered attempt's entry (SYN_SENT) keeps pointing at the gone pod for up to %s (kubernetes#101607). "+
				"These follow from the earlier losses: fix those and these go too.",
				ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds(), ep.Start.Sub(st.After).Seconds(), SYNSentTimeout))
		} else {
			out = append(out, advise(r, ep, events))
		}
	}
	// One line an episode; each says when the machine itself was short
	// of CPU then.
	for i, ep := range eps {
		out[i] += starvedNote(r, ep)
	}
	return out
}

// StarvedPressure is the machine's CPU pressure (the share of a second in
// which some task waited for a CPU) from which an episode's advice says
// the cluster may have been starved then.
const StarvedPressure = 0.5

// starvedNote says, for an episode in a second of high CPU pressure, that
// the machine was short of CPU then; "" otherwise.
func starvedNote(r *loadgen.Report, ep probes.Burst) string {
	p := max(r.Generator.PressureAt(r.Started, ep.Start), r.Generator.PressureAt(r.Started, ep.End))
	if p < StarvedPressure {
		return ""
	}
	who := "the cluster's pods and kubelet among those that may have"
	for _, t := range []time.Time{ep.Start, ep.End} {
		if b := r.Generator.BusiestAt(t); len(b) > 0 {
			who = busiest("the busiest processes then: ", b)
			break
		}
	}
	return fmt.Sprintf(" (The machine was short of CPU then: some task waited for one %.0f%% of that second; %s. A larger machine or a lower rate tells the configuration's losses from the machine's.)", 100*p, who)
}

func advise(r *loadgen.Report, ep probes.Burst, events []probes.Event) string {
	head := fmt.Sprintf("%d lost (%s) at +%.1fs", ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds())
	if ep.Unanswered > 0 {
		// Where a timeout happened says what to look at: before the
		// connection (the network, a stale rule to a gone pod) or after
		// it (the server).
		head = fmt.Sprintf("%d lost (%s; %d of the timeouts never connected: no answer to the connection attempt within %s) at +%.1fs",
			ep.Lost, classList(ep.ByClass), ep.Unanswered, time.Duration(r.Client.TimeoutMs)*time.Millisecond, r.Offset(ep.Start).Seconds())
	}
	deleted, exited := deletionBefore(events, ep)
	// A deleted pod that stopped serving while it was still an endpoint:
	// its container ended before the episode was over, soon after the
	// deletion.
	stoppedEarly := exited != nil && !exited.At.After(ep.End.Add(DefaultTolerance)) && exited.At.Sub(deleted.At) < DataPlaneLag
	if s, ok := servedLate(r, ep, events); ok && !stoppedEarly {
		return head + s
	}
	if s, ok := resolvedGone(r, ep, events); ok {
		return head + s
	}
	if s, ok := noneReady(r, ep, events); ok {
		return head + s
	}
	if s, ok := nodeLocal(r, ep, events); ok {
		return head + s
	}
	if f := faultNear(events, ep.Start); f != nil {
		return head + fmt.Sprintf(", %.1fs after the fault nodrop injected (%s) = %s", ep.Start.Sub(f.At).Seconds(), f.Detail, faultMechanism(f))
	}
	if rl := proxyReloadNear(events, ep); rl != nil {
		why := proxyReloaded
		if !r.Client.KeepAlive {
			why = proxyListenerClosed
		}
		return head + fmt.Sprintf(", as the proxy in front (%s) reloaded = %s", rl.Pod, why)
	}
	if s, ok := boundedStopRanOut(ep, events); ok {
		return head + s
	}
	if kill := near(events, ep.Start, probes.ContainerTerminated, "SIGKILL", DefaultTolerance); kill != nil {
		s := head
		if d := deletionOf(events, kill.Pod); d != nil {
			s += fmt.Sprintf(", %.1fs after pod %s was deleted", ep.Start.Sub(d.At).Seconds(), d.Pod)
		}
		return s + fmt.Sprintf(" = SIGKILL of %s at the end of its grace period: the container was still running when terminationGracePeriodSeconds ran out. "+
			"Either PID 1 ignored SIGTERM (a shell-form CMD, or a shell script that does not exec the server, never passes it on: use an exec-form CMD or an init such as tini), "+
			"or the preStop hook plus shutdown took longer than the grace period (raise terminationGracePeriodSeconds above preStop + drain).", kill.Pod)
	}
	if s, ok := podsStoppedOutOfOrder(ep, events); ok {
		return head + s
	}
	ready := lastBefore(events, ep.Start.Add(watchLag), probes.EndpointReady, DataPlaneLag+DefaultTolerance)
	if !stoppedEarly && ready != nil && (ep.ByClass[loadgen.Refused] > 0 || ep.ByClass[loadgen.HTTP5xx] > 0) {
		if s := containerStart(ep, ready, events); s != "" {
			return head + s
		}
		fix := "Use an HTTP readiness probe on a path that answers only once the app serves."
		if r.Client.HTTP2 {
			fix = "Use the native gRPC readiness probe (readinessProbe: {grpc: {port: N}}): the health service says SERVING only once the server serves."
		}
		return head + fmt.Sprintf(", %.1fs after pod %s's endpoint turned ready = the new pod was sent traffic before it served: its readiness passed too early "+
			"(no readiness probe, or a TCP probe on a port that opens before the app is ready). %s",
			ep.Start.Sub(ready.At).Seconds(), ready.Pod, fix)
	}
	if deleted != nil && ep.Unanswered == ep.Lost && exited != nil && exited.At.After(ep.End.Add(DefaultTolerance)) {
		// Every loss a connection attempt nobody answered, while the
		// deleted pod was still running: not its shutdown.
		return head + fmt.Sprintf(", %.1fs after pod %s was deleted, but before its container exited (%.1fs after the deletion) = connection attempts lost on the way to the pods, not a pod's shutdown: "+
			"a pod that runs answers a connection attempt (it accepts or refuses it), and the deleted one was no longer an endpoint. %s",
			max(ep.Start.Sub(deleted.At), 0).Seconds(), deleted.Pod, exited.At.Sub(deleted.At).Seconds(), whereSent(events, ep))
	}
	if deleted != nil {
		return head + afterDeletion(ep, deleted, exited, events, r.Client.HTTP2)
	}
	if ep.Unanswered == ep.Lost {
		return head + ", with no pod deletion before it = connection attempts lost on the way to the pods (a SYN dropped twice, or sent to an address that no longer answers), not a pod's shutdown. " + whereSent(events, ep)
	}
	return head + ", with no pod deletion before it: check the timeline for what the cluster did then."
}

// deletionBefore is the last pod deletion before the episode started (or
// as it started: the watch reports a little late), and that pod's
// container's exit after it, if any. Where the episode's losses were on
// connections to deleted pods, the last of those pods' deletions: the
// pod the losses were with, not merely the latest one deleted.
func deletionBefore(events []probes.Event, ep probes.Burst) (deleted, exited *probes.Event) {
	var any, on *probes.Event
	for i := range events {
		e := &events[i]
		if e.Kind != probes.PodDeleting || e.At.After(ep.Start.Add(watchLag)) {
			continue
		}
		any = e
		if ep.ByConnPod[e.Pod] > 0 {
			on = e
		}
	}
	deleted = cmp.Or(on, any)
	if deleted == nil {
		return nil, nil
	}
	for i := range events {
		e := &events[i]
		if e.Kind == probes.ContainerTerminated && e.Pod == deleted.Pod && !e.At.Before(deleted.At) {
			return deleted, e
		}
	}
	return deleted, nil
}

// boundedStopRanOut explains losses as a pod's GracefulStop ran out of
// the time its server gave it (the sample app's grpc_stop_timeout line)
// and Stop cut what was still open: streams, as a rule.
func boundedStopRanOut(ep probes.Burst, events []probes.Event) (string, bool) {
	e := near(events, ep.Start, probes.App, "grpc_stop_timeout", DefaultTolerance)
	if e == nil {
		return "", false
	}
	s := ""
	if d := deletionOf(events, e.Pod); d != nil {
		s = fmt.Sprintf(", %.1fs after pod %s was deleted", ep.Start.Sub(d.At).Seconds(), d.Pod)
	}
	return s + fmt.Sprintf(" = the server's bounded GracefulStop ran out of time on %s and Stop cut what was still open on it (long streams, as a rule): the bound makes the pod exit in time, and loses those streams all the same. "+
		"End long streams yourself when the server drains (return from the stream's handler, so clients open them again elsewhere); then GracefulStop finishes within its bound.", e.Pod), true
}

// deletionOf is pod's deletion, if the timeline has it.
func deletionOf(events []probes.Event, pod string) *probes.Event {
	for i := range events {
		if e := &events[i]; e.Kind == probes.PodDeleting && e.Pod == pod {
			return e
		}
	}
	return nil
}

// servedLate explains refusals or a server's own errors by pods that
// turned ready as endpoints before their app said it was ready (the
// sample app's "ready" line), and whose app said so only after the
// episode began: traffic sent to pods that did not serve, however long
// ago they turned ready. Clients that balance themselves learn such a
// pod from DNS whenever they next ask.
func servedLate(r *loadgen.Report, ep probes.Burst, events []probes.Event) (string, bool) {
	if ep.ByClass[loadgen.Refused]+ep.ByClass[loadgen.HTTP5xx] == 0 {
		return "", false
	}
	ready, _, _ := readyAt(events, ep.Start.Add(watchLag))
	var late []string
	for _, pod := range slices.Sorted(maps.Keys(ready)) {
		var endpoint, serving *probes.Event
		for i := range events {
			e := &events[i]
			switch {
			case e.Pod != pod:
			case e.Kind == probes.EndpointReady && endpoint == nil:
				endpoint = e
			case e.Kind == probes.App && serving == nil && appSays(e.Detail, "ready"):
				serving = e
			}
		}
		// An endpoint before its app was ready, and still not ready as
		// the episode began.
		if endpoint != nil && serving != nil && serving.At.After(endpoint.At) && serving.At.After(ep.Start) {
			late = append(late, fmt.Sprintf("%s (an endpoint from +%.1fs, its app ready at +%.1fs)", pod, r.Offset(endpoint.At).Seconds(), r.Offset(serving.At).Seconds()))
		}
	}
	if len(late) == 0 {
		return "", false
	}
	s := fmt.Sprintf(", while %s %s sent traffic before serving = readiness that passed before the app was ready (no readiness probe, or a TCP probe on a port that opens before the app is ready).",
		andList(late), wasWere(len(late)))
	if r.Client.Balancer != "" {
		s += " Clients that balance themselves learn pods from DNS, which names a pod once it is ready, and use them from the moment they next ask (here when the old pods' GOAWAY sent them)."
	}
	if r.Client.HTTP2 {
		return s + " Use the native gRPC readiness probe (readinessProbe: {grpc: {port: N}}): the health service says SERVING only once the server serves.", true
	}
	return s + " Use an HTTP readiness probe on a path that answers only once the app serves.", true
}

// appSays reports whether an app lifecycle line (its container's name
// first, in a pod of several) is the word line.
func appSays(detail, line string) bool {
	if _, rest, ok := strings.Cut(detail, ": "); ok {
		detail = rest
	}
	return strings.HasPrefix(detail, line+" ") || detail == line
}

// afterDeletion explains an episode that followed a pod's deletion by
// how soon it came and how its requests failed: connections closed with
// requests on them, requests routed to a pod that stopped listening, or
// a shutdown long after. http2 (gRPC's connections) speaks of RPCs,
// GOAWAY and GracefulStop.
func afterDeletion(ep probes.Burst, deleted, exited *probes.Event, events []probes.Event, http2 bool) string {
	after := max(ep.Start.Sub(deleted.At), 0)
	s := fmt.Sprintf(", %.1fs after pod %s was deleted", after.Seconds(), deleted.Pod)
	broken := ep.ByClass[loadgen.EOF] + ep.ByClass[loadgen.Reset]
	// A proxy in front answers 502/503 for a request it sent to a pod
	// that stopped listening: the same race as a refusal.
	fresh := ep.ByClass[loadgen.Refused] + ep.ByClass[loadgen.Timeout] + ep.ByClass[loadgen.HTTP5xx]
	var term *probes.Event // the deleted pod's app got SIGTERM as the episode began
	for i := range events {
		e := &events[i]
		if e.Kind == probes.App && e.Pod == deleted.Pod && appSays(e.Detail, "sigterm") && e.At.Sub(ep.Start).Abs() <= DefaultTolerance {
			term = e
		}
	}
	switch {
	case broken >= fresh && http2 && after >= DataPlaneLag+DefaultTolerance && term != nil:
		return s + fmt.Sprintf(" = the server closed connections with RPCs on them when it got SIGTERM, %.1fs after the deletion (Stop, or an exit): its preStop had kept new connections away, but clients keep the connections they have (a balancing client one to every pod it resolved). Stop with GracefulStop: its GOAWAY moves the clients, and the RPCs in flight finish; end long streams yourself or bound the wait.", term.At.Sub(deleted.At).Seconds())
	case broken >= fresh && after < DataPlaneLag+DefaultTolerance && http2:
		return s + " = the server closed connections with RPCs on them when it got SIGTERM (Stop, or an exit). Stop with GracefulStop (GOAWAY, then the RPCs in flight finish; end long streams yourself or bound the wait), and add a preStop sleep (5 s) so the endpoint is removed before the stop begins."
	case broken >= fresh && after < DataPlaneLag+DefaultTolerance:
		return s + " = the app closed connections with requests on them when it got SIGTERM. Shut down gracefully: on SIGTERM keep serving, answer with Connection: close so kept-alive clients move on, then exit once idle; and add a preStop sleep (5 s) so the endpoint is removed before the shutdown begins."
	case after < DataPlaneLag+DefaultTolerance && http2:
		s += " = RPCs on connections clients opened to the pod after it closed its listener: a GracefulStop at SIGTERM sends GOAWAY and closes the listener at once, and the clients it moves dial again through kube-proxy, which removes a deleted pod's endpoint only a second or more after the deletion"
		if exited != nil {
			s += fmt.Sprintf(" (its container exited %.1fs after the deletion)", exited.At.Sub(deleted.At).Seconds())
		}
		return s + ". Add a preStop sleep (5 s is the common figure) so GracefulStop begins once the endpoint is gone everywhere."
	case after < DataPlaneLag+DefaultTolerance:
		s += " = requests still routed to the pod after it stopped listening: kube-proxy and load balancers remove a deleted pod's endpoint only a second or more after the deletion"
		if exited != nil {
			s += fmt.Sprintf(" (its container exited %.1fs after the deletion: nothing kept it serving)", exited.At.Sub(deleted.At).Seconds())
		}
		if who, until, ok := ingressKeptRouting(events, deleted.Pod, deleted.At); ok {
			s += fmt.Sprintf("; the ingress controller (%s) sent it new requests until %.1fs after the deletion, when it applied the change", who, until.Sub(deleted.At).Seconds())
		}
		return s + ". Add a preStop sleep (5 s is the common figure) so the pod keeps serving until its endpoint is gone everywhere, and let the app drain on SIGTERM."
	default:
		return s + " = losses long after the deletion: a pod shutting down while still receiving traffic. Check the shutdown path (SIGTERM handling, drain, preStop) against the timeline."
	}
}

// resolvedGone says, for clients that resolve the Service's name and
// balance themselves, when every pod ready as the load started (the
// addresses they resolved) had left the endpoints while others were
// ready: they knew only pods that were gone.
func resolvedGone(r *loadgen.Report, ep probes.Burst, events []probes.Event) (string, bool) {
	if r.Client.Balancer == "" || ep.ByClass[loadgen.Refused]+ep.ByClass[loadgen.Timeout] != ep.Lost {
		// Answers (a server's own error) came from a pod the clients
		// could still reach.
		return "", false
	}
	resolved, _, _ := readyAt(events, r.Started)
	now, _, _ := readyAt(events, ep.Start.Add(watchLag))
	if len(resolved) == 0 || len(now) == 0 {
		return "", false
	}
	for p := range resolved {
		if now[p] {
			return "", false
		}
	}
	return fmt.Sprintf(", when every pod ready as the load started (%s: the addresses its clients resolved) had left the endpoints, while %s %s ready = "+
		"the clients, which resolve the Service's name and balance %s over its addresses themselves, knew only pods that were gone. "+
		"grpc-go's DNS resolver asks again at most every 30 s after an answer, however often its balancer asks, so clients that resolved less than 30 s before their pods went "+
		"(started with the load here; in life, clients rolled in the same release, or moved by an earlier GOAWAY) have nowhere to send until then. "+
		"Keep each old pod serving longer than that (a preStop sleep above 30 s, terminationGracePeriodSeconds above it), or let clients learn of new pods sooner "+
		"(a proxy or xDS in front, or a ClusterIP Service and the server's MaxConnectionAge).",
		strings.Join(slices.Sorted(maps.Keys(resolved)), ", "), strings.Join(slices.Sorted(maps.Keys(now)), ", "), wasWere(len(now)), r.Client.Balancer), true
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

// noneReady says, when no endpoint was ready as the episode started (and
// some had been), which one left last and which came next.
func noneReady(r *loadgen.Report, ep probes.Burst, events []probes.Event) (string, bool) {
	ready, seen, left := readyAt(events, ep.Start)
	if !seen || len(ready) > 0 || left == nil {
		return "", false
	}
	s := fmt.Sprintf(", when no pod was ready: the last ready one, %s, left the endpoints at +%.1fs (%s)", left.Pod, r.Offset(left.At).Seconds(), left.Kind)
	for i := range events {
		if e := events[i]; e.Kind == probes.EndpointReady && e.At.After(ep.Start) {
			s += fmt.Sprintf(" and the next, %s, turned ready at +%.1fs", e.Pod, r.Offset(e.At).Seconds())
			break
		}
	}
	return s + " = nothing served in between. With one replica, whatever takes it away (a rollout with maxUnavailable 1, an eviction, a node drain) leaves nothing to serve until its replacement is ready: run at least 2 replicas, roll with maxSurge 1 and maxUnavailable 0, and add a PodDisruptionBudget (minAvailable 1) so that a drain waits for the replacement.", true
}

// nodeLocal says, when an episode's losses all came from generators on
// nodes that had no ready pod then, while generators on other nodes lost
// nothing and pods there were ready, that the node's clients were sent
// only to pods on their own node.
func nodeLocal(r *loadgen.Report, ep probes.Burst, events []probes.Event) (string, bool) {
	if len(r.Generators) < 2 || len(ep.ByGenerator) == 0 {
		return "", false
	}
	lossy, spared := map[string]bool{}, map[string]bool{}
	for _, g := range r.Generators {
		switch {
		case g.Node == "":
			return "", false
		case ep.ByGenerator[g.Name] > 0:
			lossy[g.Node] = true
		default:
			spared[g.Node] = true
		}
	}
	for n := range lossy {
		if spared[n] {
			return "", false
		}
	}
	if len(spared) == 0 {
		return "", false
	}
	nodeOf := probes.PodNodes(events)
	ready, _, _ := readyAt(events, ep.Start)
	var elsewhere []string
	for pod := range ready {
		n := nodeOf[pod]
		if n == "" || lossy[n] {
			return "", false
		}
		elsewhere = append(elsewhere, pod+" on "+n)
	}
	if len(elsewhere) == 0 {
		return "", false
	}
	slices.Sort(elsewhere)
	nodes := slices.Sorted(maps.Keys(lossy))
	s := fmt.Sprintf(", lost only by the clients on %s (those on %s lost nothing), when no pod on %s was ready while %s %s",
		strings.Join(nodes, ", "), strings.Join(slices.Sorted(maps.Keys(spared)), ", "), pronoun(len(nodes)), strings.Join(elsewhere, ", "), isAre(len(elsewhere)))
	for i := range events {
		if e := events[i]; e.Kind == probes.EndpointReady && e.At.After(ep.Start) && lossy[nodeOf[e.Pod]] {
			s += fmt.Sprintf(" (the next there, %s, turned ready at +%.1fs)", e.Pod, r.Offset(e.At).Seconds())
			break
		}
	}
	return s + " = those clients were sent only to pods on their own node: a Service with internalTrafficPolicy: Local (or a topology rule) drops the connections of a node with no ready pod, whatever the other nodes have. " +
		"Use internalTrafficPolicy: Cluster; Local suits a DaemonSet rolled with maxSurge 1 and maxUnavailable 0, which keeps a ready pod on every node.", true
}

func pronoun(n int) string {
	if n == 1 {
		return "that node"
	}
	return "those nodes"
}

func isAre(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

// faultNear is the fault nodrop injected that an episode starting at t
// follows: one in place then (started, not undone), or one that ended or
// struck at once (a kill) at most DataPlaneLag + DefaultTolerance before.
func faultNear(events []probes.Event, t time.Time) *probes.Event {
	var found *probes.Event
	for i := range events {
		e := &events[i]
		if e.Kind != probes.FaultStart || e.At.After(t.Add(watchLag)) {
			continue
		}
		end := e.At
		for j := range events {
			if u := events[j]; u.Kind == probes.FaultEnd && !u.At.Before(e.At) && strings.HasPrefix(e.Detail, u.Detail) {
				end = u.At
				break
			}
		}
		if t.Before(end.Add(DataPlaneLag + DefaultTolerance)) {
			found = e
		}
	}
	return found
}

// faultMechanism says what the fault that started with e does to
// requests: its own Mechanism, as the run recorded it.
func faultMechanism(e *probes.Event) string {
	if e.Why != "" {
		return e.Why
	}
	return "check the timeline for what the fault did then."
}

// watchLag is how late the watch may report an event that caused losses.
const watchLag = time.Second

// near is the first event of kind k whose detail contains detail, within
// tol of t.
func near(events []probes.Event, t time.Time, k probes.Kind, detail string, tol time.Duration) *probes.Event {
	for i := range events {
		e := &events[i]
		if e.Kind == k && strings.Contains(e.Detail, detail) && e.At.Sub(t).Abs() <= tol {
			return e
		}
	}
	return nil
}

// lastBefore is the last event of kind k at or before t, no more than
// within before it.
func lastBefore(events []probes.Event, t time.Time, k probes.Kind, within time.Duration) *probes.Event {
	var found *probes.Event
	for i := range events {
		e := &events[i]
		if e.Kind == k && !e.At.After(t) && t.Sub(e.At) <= within {
			found = e
		}
	}
	return found
}

// proxyReloaded is the mechanism of kept-alive connections lost to a
// proxy's reload.
const proxyReloaded = "a reload starts new workers and has the old ones close the kept-alive client connections they hold once idle; " +
	"a request written to such a connection as it closes is lost (EOF or reset: the idle-close race, at the proxy). " +
	"A proxy that reloads on every endpoint change costs kept-alive clients this on every rollout, whatever the pods do: " +
	"change its backends without a reload (HAProxy's runtime API, ingress-nginx's dynamic backends), or have clients retry idempotent requests on a new connection."

// proxyListenerClosed is the mechanism of new connections lost to a
// proxy's reload.
const proxyListenerClosed = "the old proxy process closed its listening socket with connections the kernel had accepted for it still queued, and those were reset: " +
	"a reload where the new process binds a socket of its own (HAProxy started anew with -sf, or with SO_REUSEPORT listeners) instead of taking the old one over. " +
	"Reload seamlessly: HAProxy's master-worker mode (-W) or expose-fd listeners with -x, which hand the listening socket to the new process."

// proxyReloadLead is how long before a reload's lifecycle line (written
// once the reload is done) its losses can start.
const (
	proxyReloadLead = 500 * time.Millisecond
	proxyReloadLag  = 300 * time.Millisecond
)

// proxyReloadNear is a reload of a proxy in front (its lifecycle line
// "reloaded") that an episode of broken kept-alive connections started
// with: within proxyReloadLead before the line, or proxyReloadLag after
// it (the old workers close idle connections as the new one takes over).
func proxyReloadNear(events []probes.Event, ep probes.Burst) *probes.Event {
	broken := ep.ByClass[loadgen.EOF] + ep.ByClass[loadgen.Reset]
	if broken*2 < ep.Lost {
		return nil
	}
	for i := range events {
		e := &events[i]
		if e.Kind != probes.App || !strings.HasPrefix(e.Detail, "reloaded") {
			continue
		}
		if !e.At.Before(ep.Start.Add(-proxyReloadLag)) && !e.At.After(ep.Start.Add(proxyReloadLead)) {
			return e
		}
	}
	return nil
}

// ingressKeptRouting says how long the ingress controller went on
// routing new requests to pod after deleted: the first probes.Ingress
// event after it whose ready pods leave it out. ok is false unless an
// event at or before the deletion routed to it.
func ingressKeptRouting(events []probes.Event, pod string, deleted time.Time) (who string, until time.Time, ok bool) {
	routesTo := func(e probes.Event) bool {
		ready, _, _ := strings.Cut(e.Detail, "; terminating")
		_, list, found := strings.Cut(ready, " routes to ")
		return found && slices.Contains(strings.Split(list, ", "), pod)
	}
	routed := false
	for _, e := range events {
		if e.Kind != probes.Ingress {
			continue
		}
		if !e.At.After(deleted) {
			routed = routesTo(e)
			continue
		}
		if !routed {
			return "", time.Time{}, false
		}
		if !routesTo(e) {
			who, _, _ = strings.Cut(e.Detail, " routes to ")
			who, _, _ = strings.Cut(who, " has no route")
			return who, e.At, true
		}
	}
	return "", time.Time{}, false
}

// whereSent says where the nodes sent an episode's unanswered connection
// attempts, from their conntrack entries (the timeline's conntrack
// events), when nothing in the rollout explains them: the one fact that
// tells a SYN dropped on the way from one sent to an address nobody has.
func whereSent(events []probes.Event, ep probes.Burst) string {
	const most = 3
	var seen []string
	for _, e := range events {
		if e.Kind == probes.Conntrack && !e.At.Before(ep.Start) && !e.At.After(ep.End) {
			seen = append(seen, e.Detail)
		}
	}
	switch {
	case len(seen) == 0:
		return "Nothing in the rollout's timeline explains it; check what the cluster's network did then."
	case len(seen) > most:
		seen = append(seen[:most], fmt.Sprintf("and %d more", len(seen)-most))
	}
	return "The node's conntrack table: " + strings.Join(seen, "; ") + "."
}

package scenario

import (
	"fmt"
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
		if lastTimeout := stale[i]; !lastTimeout.IsZero() && lastBefore(events, ep.Start, probes.PodGone, DataPlaneLag) == nil {
			out = append(out, fmt.Sprintf("%d lost (%s) at +%.1fs, %.1fs after the last timeouts = connections that reused the source port of an earlier attempt sent to a gone pod: "+
				"kube-proxy deletes no TCP conntrack entry when an endpoint goes, and an unanswered attempt's entry (SYN_SENT) keeps pointing at the gone pod for up to %s (kubernetes#101607). "+
				"These follow from the earlier losses: fix those and these go too.",
				ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds(), ep.Start.Sub(lastTimeout).Seconds(), SYNSentTimeout))
		} else {
			out = append(out, advise(r, ep, events))
		}
	}
	return out
}

func advise(r *loadgen.Report, ep probes.Burst, events []probes.Event) string {
	head := fmt.Sprintf("%d lost (%s) at +%.1fs", ep.Lost, classList(ep.ByClass), r.Offset(ep.Start).Seconds())
	// The deletion this episode follows, if any: the last pod deletion
	// before it started (or as it started: the watch reports a little
	// late), and that pod's container's exit.
	var deleted, exited *probes.Event
	for i := range events {
		e := &events[i]
		if e.Kind == probes.PodDeleting && !e.At.After(ep.Start.Add(watchLag)) {
			deleted = e
		}
	}
	if deleted != nil {
		for i := range events {
			e := &events[i]
			if e.Kind == probes.ContainerTerminated && e.Pod == deleted.Pod && !e.At.Before(deleted.At) {
				exited = e
				break
			}
		}
	}
	if kill := near(events, ep.Start, probes.ContainerTerminated, "SIGKILL", DefaultTolerance); kill != nil {
		s := head
		if deleted != nil && deleted.Pod == kill.Pod {
			s += fmt.Sprintf(", %.1fs after pod %s was deleted", ep.Start.Sub(deleted.At).Seconds(), deleted.Pod)
		}
		return s + fmt.Sprintf(" = SIGKILL of %s at the end of its grace period: the container was still running when terminationGracePeriodSeconds ran out. "+
			"Either PID 1 ignored SIGTERM (a shell-form CMD, or a shell script that does not exec the server, never passes it on: use an exec-form CMD or an init such as tini), "+
			"or the preStop hook plus shutdown took longer than the grace period (raise terminationGracePeriodSeconds above preStop + drain).", kill.Pod)
	}
	// A deleted pod that stopped serving while it was still an endpoint:
	// its container ended before the episode was over, soon after the
	// deletion.
	stoppedEarly := exited != nil && !exited.At.After(ep.End.Add(DefaultTolerance)) && exited.At.Sub(deleted.At) < DataPlaneLag
	ready := lastBefore(events, ep.Start.Add(watchLag), probes.EndpointReady, DataPlaneLag+DefaultTolerance)
	if !stoppedEarly && ready != nil && (ep.ByClass[loadgen.Refused] > 0 || ep.ByClass[loadgen.HTTP5xx] > 0) {
		return head + fmt.Sprintf(", %.1fs after pod %s's endpoint turned ready = the new pod was sent traffic before it served: its readiness passed too early "+
			"(no readiness probe, or a TCP probe on a port that opens before the app is ready). Use an HTTP readiness probe on a path that answers only once the app serves.",
			ep.Start.Sub(ready.At).Seconds(), ready.Pod)
	}
	if deleted != nil {
		after := max(ep.Start.Sub(deleted.At), 0)
		s := head + fmt.Sprintf(", %.1fs after pod %s was deleted", after.Seconds(), deleted.Pod)
		broken := ep.ByClass[loadgen.EOF] + ep.ByClass[loadgen.Reset]
		fresh := ep.ByClass[loadgen.Refused] + ep.ByClass[loadgen.Timeout]
		switch {
		case broken >= fresh && after < DataPlaneLag+DefaultTolerance:
			return s + " = the app closed connections with requests on them when it got SIGTERM. Shut down gracefully: on SIGTERM keep serving, answer with Connection: close so kept-alive clients move on, then exit once idle; and add a preStop sleep (5 s) so the endpoint is removed before the shutdown begins."
		case after < DataPlaneLag+DefaultTolerance:
			s += " = requests still routed to the pod after it stopped listening: kube-proxy and load balancers remove a deleted pod's endpoint only a second or more after the deletion"
			if exited != nil {
				s += fmt.Sprintf(" (its container exited %.1fs after the deletion: nothing kept it serving)", exited.At.Sub(deleted.At).Seconds())
			}
			return s + ". Add a preStop sleep (5 s is the common figure) so the pod keeps serving until its endpoint is gone everywhere, and let the app drain on SIGTERM."
		default:
			return s + " = losses long after the deletion: a pod shutting down while still receiving traffic. Check the shutdown path (SIGTERM handling, drain, preStop) against the timeline."
		}
	}
	return head + ", with no pod deletion before it: check the timeline for what the cluster did then."
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

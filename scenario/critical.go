package scenario

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// The moments a run's verdict rests on, and how much load around each
// must have been delivered: from CriticalBefore ahead of it until the data
// plane has caught up after it (DataPlaneLag).
const CriticalBefore = time.Second

// CriticalSpans are the stretches of a run in which the load must have
// been delivered for its verdict to stand (loadgen.Report.JudgeAcross):
// around the disruption's trigger and its settling, around every moment
// of the pods' lives a configuration can lose requests at (a pod created,
// started, ready, deleting, its endpoint changed, a container or the app
// stopping, a fault placed or undone), around each episode of losses, and
// the windows the claim's timing rule names. Outside them nothing the
// configuration does happens, so a stall of the generator there is said
// but voids nothing. With no event of the pods at all (the recorder saw
// none), the whole window is critical: nil.
func CriticalSpans(r *loadgen.Report, events []probes.Event, w Window, e Expectation) []loadgen.Span {
	var spans []loadgen.Span
	around := func(at time.Time) {
		spans = append(spans, loadgen.Span{From: at.Add(-CriticalBefore), To: at.Add(DataPlaneLag)})
	}
	lifecycle := 0
	for _, ev := range events {
		if ev.At.Before(w.Trigger.Add(-CriticalBefore)) || ev.At.After(w.End) || !critical(ev.Kind) {
			continue
		}
		lifecycle++
		around(ev.At)
	}
	if lifecycle == 0 {
		return nil
	}
	around(w.Trigger)
	if !w.Settled.IsZero() {
		around(w.Settled)
	}
	for _, ep := range probes.Episodes(probes.Bursts(r, events), EpisodeGap) {
		spans = append(spans, loadgen.Span{From: ep.Start.Add(-CriticalBefore), To: ep.End.Add(CriticalBefore)})
	}
	for _, t := range e.LossStarts {
		tol := t.Tolerance
		if tol == 0 {
			tol = DefaultTolerance
		}
		for _, ev := range events {
			if ev.Kind == t.After && strings.Contains(ev.Detail, t.Detail) {
				at := ev.At.Add(t.Delay)
				spans = append(spans, loadgen.Span{From: at.Add(-tol), To: at.Add(tol)})
			}
		}
	}
	return spans
}

// critical reports whether an event of kind k is a moment a
// configuration can lose requests at.
func critical(k probes.Kind) bool {
	switch k {
	case probes.PodCreated, probes.ContainerStarted, probes.PodReady, probes.PodNotReady,
		probes.PodDeleting, probes.ContainerTerminated, probes.PodGone,
		probes.EndpointReady, probes.EndpointNotReady, probes.EndpointTerminating, probes.EndpointRemoved,
		probes.KubeEvent, probes.App, probes.Disruption, probes.FaultStart, probes.FaultEnd, probes.Ingress:
		return true
	}
	return false
}

// StarvedLookBack is how long before a loss a probe that timed out still
// says the cluster was starved then.
const StarvedLookBack = 10 * time.Second

// starvedCluster says, when every episode of a run's losses came while
// the cluster itself was starved (a probe of its pods timed out from
// StarvedLookBack before the episode to its end), why; "" otherwise. On a
// machine too small for the load, the kubelet's own probes time out: the
// losses then are the machine's, not the configuration's.
func starvedCluster(r *loadgen.Report, events []probes.Event) string {
	eps := probes.Episodes(probes.Bursts(r, events), EpisodeGap)
	if len(eps) == 0 {
		return ""
	}
	var seen []string
	for _, ep := range eps {
		var ev *probes.Event
		for i := range events {
			e := &events[i]
			if probeTimedOut(*e) && !e.At.Before(ep.Start.Add(-StarvedLookBack)) && !e.At.After(ep.End) {
				ev = e
				break
			}
		}
		if ev == nil {
			return ""
		}
		seen = append(seen, fmt.Sprintf("%d lost at +%.1fs, %.1fs after %q on pod %s", ep.Lost, r.Offset(ep.Start).Seconds(), ep.Start.Sub(ev.At).Seconds(), ev.Detail, ev.Pod))
	}
	return "the cluster itself was starved when requests were lost (its own probes timed out): " + strings.Join(seen, "; ") +
		": the machine is too small for this load; run at a lower --rate or on a larger machine"
}

// probeTimedOut reports whether e is the kubelet saying a probe timed out.
// A native gRPC probe that could not connect is not one: the kubelet
// dials until the probe's timeout and reports every refused attempt as
// "timeout: failed to connect service … within 1s", which is a server
// not listening yet (or any more), not a starved machine.
func probeTimedOut(e probes.Event) bool {
	return e.Kind == probes.KubeEvent && strings.HasPrefix(e.Detail, "Unhealthy") &&
		(strings.Contains(e.Detail, "timed out") || strings.Contains(e.Detail, "deadline exceeded") || strings.Contains(e.Detail, "Timeout exceeded")) &&
		!strings.Contains(e.Detail, "failed to connect service")
}

// StarvedAround is how far before and after a timeout the answered
// requests starvedAt looks at were sent.
const StarvedAround = time.Second

// starvedAt says, for a request sent at t that timed out, whether the
// machine was starved then: some task waited for a CPU StarvedPressure or
// more of that second, and an answered request sent within StarvedAround
// of it took half the client's timeout or more. A request lost to a
// network that dropped it, or to a pod that was gone, times out among
// answers that came quickly; one among answers the machine kept waiting
// nearly as long is the tail of those delays, not the configuration's.
func starvedAt(r *loadgen.Report, t time.Time) bool {
	timeout := time.Duration(r.Client.TimeoutMs) * time.Millisecond
	pressure := max(r.Generator.PressureAt(r.Started, t), r.Generator.PressureAt(r.Started, t.Add(timeout)))
	slowest := r.SlowestAnswered(t.Add(-StarvedAround), t.Add(StarvedAround))
	return timeout > 0 && pressure >= StarvedPressure && 2*slowest >= timeout
}

// bucketAt is the start of the run's i-th timeline bucket.
func bucketAt(r *loadgen.Report, i int) time.Time {
	return r.Started.Add(time.Duration(r.Timeline[i].OffsetMs) * time.Millisecond)
}

// starvedTimeouts are the timeline's buckets whose timeouts were sent
// while the machine was starved (starvedAt at the bucket's start), with
// how many timeouts each holds. The timeline counts every loss, where the
// loss details stop at loadgen.MaxLossDetails.
func starvedTimeouts(r *loadgen.Report) map[int]int {
	out := map[int]int{}
	for i, b := range r.Timeline {
		if n := b.LostByClass[loadgen.Timeout]; n > 0 {
			if starvedAt(r, bucketAt(r, i)) {
				out[i] = n
			}
		}
	}
	return out
}

// starvedSpans says, one line per run of consecutive buckets, the
// timeouts starvedTimeouts found, and how many in all.
func starvedSpans(r *loadgen.Report, buckets map[int]int) (lines []string, total int) {
	idx := slices.Sorted(maps.Keys(buckets))
	for k := 0; k < len(idx); {
		j, n := k, 0
		for ; j < len(idx) && idx[j]-idx[k] == j-k; j++ {
			n += buckets[idx[j]]
		}
		from, to := bucketAt(r, idx[k]), bucketAt(r, idx[j-1]).Add(loadgen.BucketWidth)
		slowest := r.SlowestAnswered(from.Add(-StarvedAround), to.Add(StarvedAround))
		pressure := 0.0
		for t := from; t.Before(to); t = t.Add(time.Second) {
			pressure = max(pressure, r.Generator.PressureAt(r.Started, t))
		}
		lines = append(lines, fmt.Sprintf("%d timeouts sent from +%.1fs to +%.1fs: the machine was starved then: answered requests sent within %s of them took up to %.1fs, and some task waited for a CPU up to %.0f%% of those seconds",
			n, r.Offset(from).Seconds(), r.Offset(to).Seconds(), StarvedAround, slowest.Seconds(), 100*pressure))
		total += n
		k = j
	}
	return lines, total
}

// starvedEpisode reports whether an episode of a lossy run is only
// timeouts its mechanism does not claim, sent while the machine was
// starved (starvedAt at its first and last loss): spared from the
// mechanism's classes, they are spared from its timing too.
func starvedEpisode(r *loadgen.Report, ep probes.Burst, e Expectation) bool {
	if _, claimed := e.Classes[loadgen.Timeout]; claimed || ep.Lost == 0 || ep.ByClass[loadgen.Timeout] != ep.Lost {
		return false
	}
	return starvedAt(r, ep.Start) && starvedAt(r, ep.End)
}

// starvedMachine says, when every loss of a run is a timeout sent while
// the machine was starved (starvedTimeouts), why; "" otherwise.
func starvedMachine(r *loadgen.Report) string {
	if r.Lost == 0 || r.LostByClass[loadgen.Timeout] != r.Lost {
		return ""
	}
	lines, n := starvedSpans(r, starvedTimeouts(r))
	if n != r.Lost {
		return ""
	}
	return fmt.Sprintf("the machine was starved when requests were lost: %s: with answers kept waiting half the %s timeout or more, these timeouts are the tail of the machine's delays, not the configuration's: run at a lower --rate or on a larger machine",
		strings.Join(lines, "; "), time.Duration(r.Client.TimeoutMs)*time.Millisecond)
}

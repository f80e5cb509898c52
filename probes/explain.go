package probes

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// burstGap separates two bursts of losses.
const burstGap = 500 * time.Millisecond

// lookBack is how far before a burst an event may have caused it, and
// lookAhead how long after it the watch may report what caused it (a
// container's exit reaches the API up to a second or so later).
const (
	lookBack  = 5 * time.Second
	lookAhead = 2 * time.Second
)

// Burst is a run of losses close in time, with the cluster events that
// most likely explain it.
type Burst struct {
	Start, End time.Time
	ByClass    map[loadgen.Class]int
	Lost       int
	// Unanswered are its timeouts that never had a connection: no answer
	// to the connection attempt (the SYN) within the timeout.
	Unanswered int
	// Cause is the last event before the burst started (nil if none
	// within lookBack); During are the events from its start until
	// lookAhead after its end.
	Cause  *Event
	During []Event
	// ByGenerator counts its losses by the generator that sent them,
	// when several shared the load (loadgen.Merge).
	ByGenerator map[string]int
	// ByConnPod counts its losses on reused connections by the pod that
	// answered on the connection before (loadgen.Loss.ConnPod).
	ByConnPod map[string]int
}

// Bursts groups a report's losses and lays each group next to events.
func Bursts(r *loadgen.Report, events []Event) []Burst {
	losses := append([]loadgen.Loss(nil), r.Losses...)
	sort.Slice(losses, func(i, j int) bool { return losses[i].At.Before(losses[j].At) })
	var bursts []Burst
	for _, l := range losses {
		if n := len(bursts); n == 0 || l.At.Sub(bursts[n-1].End) > burstGap {
			bursts = append(bursts, Burst{Start: l.At, End: l.At, ByClass: map[loadgen.Class]int{}})
		}
		b := &bursts[len(bursts)-1]
		b.End = l.At
		b.ByClass[l.Class]++
		b.Lost++
		if l.Generator != "" {
			if b.ByGenerator == nil {
				b.ByGenerator = map[string]int{}
			}
			b.ByGenerator[l.Generator]++
		}
		if l.ConnPod != "" {
			if b.ByConnPod == nil {
				b.ByConnPod = map[string]int{}
			}
			b.ByConnPod[l.ConnPod]++
		}
		if l.Class == loadgen.Timeout && l.NoConnection {
			b.Unanswered++
		}
	}
	for i := range bursts {
		b := &bursts[i]
		for j := range events {
			e := events[j]
			switch {
			case e.Kind == Conntrack:
				// Evidence about the burst's own losses.
				if !e.At.Before(b.Start) && !e.At.After(b.End) {
					b.During = append(b.During, e)
				}
			case !e.At.After(b.Start) && b.Start.Sub(e.At) <= lookBack && e.Kind != KubeEvent && e.Kind != GoAway:
				b.Cause = &events[j]
			case e.At.After(b.Start) && !e.At.After(b.End.Add(lookAhead)):
				b.During = append(b.During, e)
			}
		}
	}
	return bursts
}

// Explain writes one line per burst, e.g. "212 reset at +31.200s (over
// 0.120s), 0.100s after container terminated web-x2: app exited 137".
func Explain(r *loadgen.Report, events []Event) string {
	var sb strings.Builder
	for _, b := range Bursts(r, events) {
		var parts []string
		for _, c := range loadgen.LossClasses {
			if n := b.ByClass[c]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, c))
			}
		}
		fmt.Fprintf(&sb, "%s at +%.3fs (over %.3fs)", strings.Join(parts, ", "), r.Offset(b.Start).Seconds(), b.End.Sub(b.Start).Seconds())
		if b.Cause != nil {
			fmt.Fprintf(&sb, ", %.3fs after %s", b.Start.Sub(b.Cause.At).Seconds(), b.Cause)
		} else {
			sb.WriteString(", with no cluster event in the 5 s before")
		}
		if len(b.ByGenerator) > 0 {
			var from []string
			for _, g := range slices.Sorted(maps.Keys(b.ByGenerator)) {
				from = append(from, fmt.Sprintf("%s (%d)", g, b.ByGenerator[g]))
			}
			fmt.Fprintf(&sb, "; sent by %s", strings.Join(from, ", "))
		}
		if len(b.ByConnPod) > 0 {
			nodes := PodNodes(events)
			var to []string
			for _, p := range slices.Sorted(maps.Keys(b.ByConnPod)) {
				where := p
				if n := nodes[p]; n != "" {
					where += " on " + n
				}
				to = append(to, fmt.Sprintf("%s (%d)", where, b.ByConnPod[p]))
			}
			fmt.Fprintf(&sb, "; on connections to %s", strings.Join(to, ", "))
		}
		sb.WriteString("\n")
		for _, e := range b.During {
			fmt.Fprintf(&sb, "    +%.3fs %s\n", r.Offset(e.At).Seconds(), e)
		}
	}
	return sb.String()
}

// PodNodes is the node each pod was scheduled on, from the timeline.
func PodNodes(events []Event) map[string]string {
	out := map[string]string{}
	for _, e := range events {
		if e.Kind == PodScheduled {
			out[e.Pod] = e.Detail
		}
	}
	return out
}

// Timeline writes every event with its offset from the load's start.
func Timeline(r *loadgen.Report, events []Event) string {
	var sb strings.Builder
	for _, e := range events {
		fmt.Fprintf(&sb, "%+9.3fs  %s\n", r.Offset(e.At).Seconds(), e)
	}
	return sb.String()
}

// Episodes merges bursts less than gap apart: one outage whose requests
// happen to succeed now and then is one episode with one cause.
func Episodes(bursts []Burst, gap time.Duration) []Burst {
	var out []Burst
	for _, b := range bursts {
		if n := len(out); n > 0 && b.Start.Sub(out[n-1].End) < gap {
			e := &out[n-1]
			e.End = b.End
			e.Lost += b.Lost
			e.Unanswered += b.Unanswered
			for c, k := range b.ByClass {
				e.ByClass[c] += k
			}
			for g, k := range b.ByGenerator {
				if e.ByGenerator == nil {
					e.ByGenerator = map[string]int{}
				}
				e.ByGenerator[g] += k
			}
			for p, k := range b.ByConnPod {
				if e.ByConnPod == nil {
					e.ByConnPod = map[string]int{}
				}
				e.ByConnPod[p] += k
			}
			e.During = append(e.During, b.During...)
			continue
		}
		b.ByClass, b.ByGenerator, b.ByConnPod = maps.Clone(b.ByClass), maps.Clone(b.ByGenerator), maps.Clone(b.ByConnPod)
		out = append(out, b)
	}
	return out
}

// StartsAfter reports whether b started within tol of delay after some
// event of kind k whose detail contains detail ("" for any): for a
// mechanism such as "SIGKILL at the end of the grace period", a burst must
// start about grace after a pod's deletion.
func StartsAfter(b Burst, events []Event, k Kind, detail string, delay, tol time.Duration) bool {
	for _, e := range events {
		if e.Kind != k || !strings.Contains(e.Detail, detail) {
			continue
		}
		if d := b.Start.Sub(e.At.Add(delay)); d >= -tol && d <= tol {
			return true
		}
	}
	return false
}

package scenario

import (
	"fmt"
	"math"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// FaultBound is what a fault that struck one pod (a kill, a crash) may
// cost: no more than that pod could have been sent while it was down.
// kube-proxy spreads new connections evenly over the ready endpoints, so
// the pod's share is one over the endpoints ready when it was struck; it
// was down from the fault until its endpoint was ready again (or the pod
// was gone, or the fault undone, or the load stopped); and a request sent up to the client's
// timeout before the fault may still have been on the wire. The bound is
// loose by design (a 2 s timeout before a 3 s outage): what it rules out
// is loss beyond the struck pod, on pods the fault never touched.
type FaultBound struct {
	Pod string `json:"pod"`
	// Endpoints were ready when the fault struck, the pod's among them.
	Endpoints int `json:"endpoints"`
	// FromS and ToS are the window, in seconds from the start of the load.
	FromS float64 `json:"from_s"`
	ToS   float64 `json:"to_s"`
	// Sent in the window; Max is Sent / Endpoints, rounded up.
	Sent int `json:"sent"`
	Max  int `json:"max"`
	// UpAgain names the event that ended the window.
	UpAgain string `json:"up_again"`
}

func (b FaultBound) String() string {
	return fmt.Sprintf("at most the %d requests pod %s could have been sent while it was down: 1/%d of the %d sent from +%.1fs (the client's timeout before the fault) until %s at +%.1fs",
		b.Max, b.Pod, b.Endpoints, b.Sent, b.FromS, b.UpAgain, b.ToS)
}

// faultBound works out the bound of the first fault that struck a pod;
// false if no fault did.
func faultBound(r *loadgen.Report, events []probes.Event, w Window) (FaultBound, bool) {
	var fault *probes.Event
	for i := range events {
		if e := &events[i]; e.Kind == probes.FaultStart && e.Pod != "" {
			fault = e
			break
		}
	}
	if fault == nil {
		return FaultBound{}, false
	}
	b := FaultBound{Pod: fault.Pod}
	ready, _, _ := readyAt(events, fault.At)
	end := w.End
	if end.IsZero() {
		end = r.LastSent
	}
	up := end
	b.UpAgain = "the load stopped"
	for _, e := range events {
		if !e.At.After(fault.At) {
			continue
		}
		if e.Pod == fault.Pod && (e.Kind == probes.EndpointReady || e.Kind == probes.PodGone || e.Kind == probes.FaultEnd) && e.At.Before(up) {
			up, b.UpAgain = e.At, fmt.Sprintf("its %s", e.Kind)
			break
		}
	}
	ready[fault.Pod] = true
	b.Endpoints = len(ready)
	timeout := time.Duration(r.Client.TimeoutMs * float64(time.Millisecond))
	from := fault.At.Add(-timeout)
	b.FromS, b.ToS = r.Offset(from).Seconds(), r.Offset(up).Seconds()
	for _, bk := range r.Timeline {
		at := r.Started.Add(time.Duration(bk.OffsetMs) * time.Millisecond)
		if at.Add(loadgen.BucketWidth).After(from) && at.Before(up) {
			b.Sent += bk.Sent
		}
	}
	b.Max = int(math.Ceil(float64(b.Sent) / float64(b.Endpoints)))
	return b, true
}

// readyAt replays the timeline's endpoint changes up to t: the pods whose
// endpoints were ready then, whether any endpoint had been ready before,
// and the last change that took a ready one away.
func readyAt(events []probes.Event, t time.Time) (ready map[string]bool, seen bool, left *probes.Event) {
	ready = map[string]bool{}
	for i := range events {
		e := &events[i]
		if e.At.After(t) {
			break
		}
		switch e.Kind {
		case probes.EndpointReady:
			ready[e.Pod], seen = true, true
		case probes.EndpointNotReady, probes.EndpointTerminating, probes.EndpointRemoved, probes.PodGone:
			if ready[e.Pod] {
				delete(ready, e.Pod)
				left = e
			}
		}
	}
	return ready, seen, left
}

package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// A kill's losses are held to the killed pod's share of what was sent
// while it was down: one over the endpoints ready then, from the
// client's timeout before the kill until its endpoint is ready again.
func TestFaultBoundIsTheStruckPodsShare(t *testing.T) {
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	r := &loadgen.Report{Started: t0, Client: loadgen.Client{TimeoutMs: 2000}, Verdict: loadgen.Lossy}
	for i := range 200 { // 20 s at 1,000 rps
		r.Timeline = append(r.Timeline, loadgen.Bucket{OffsetMs: int64(i) * 100, Sent: 100})
	}
	r.Total, r.LastSent = 20000, at(20*time.Second)
	events := []probes.Event{
		{At: at(time.Second), Kind: probes.EndpointReady, Pod: "old-a"},
		{At: at(time.Second), Kind: probes.EndpointReady, Pod: "old-b"},
		{At: at(9900 * time.Millisecond), Kind: probes.EndpointReady, Pod: "new-c"},
		{At: at(9950 * time.Millisecond), Kind: probes.EndpointTerminating, Pod: "old-a"},
		{At: at(10 * time.Second), Kind: probes.FaultStart, Pod: "old-b", Detail: "SIGKILL"},
		{At: at(11 * time.Second), Kind: probes.EndpointNotReady, Pod: "old-b"},
		{At: at(13100 * time.Millisecond), Kind: probes.EndpointReady, Pod: "old-b"},
	}
	w := Window{Trigger: at(3 * time.Second), Settled: at(15 * time.Second), End: at(20 * time.Second)}
	b, ok := faultBound(r, events, w)
	// Two endpoints ready at the kill (old-b, new-c); sent from 8.0 s to
	// 13.1 s: the 51 buckets from 8.0 to 13.0.
	if !ok || b.Pod != "old-b" || b.Endpoints != 2 || b.Sent != 5100 || b.Max != 2550 || !strings.Contains(b.UpAgain, "endpoint ready") {
		t.Fatalf("bound %+v", b)
	}
	e := Expectation{Verdict: loadgen.Lossy, BoundedByFault: true, Classes: map[loadgen.Class]string{loadgen.Refused: "down"}}
	lossy := func(n int) *loadgen.Report {
		c := *r
		c.Lost, c.LostByClass, c.Losses = n, map[loadgen.Class]int{loadgen.Refused: n}, nil
		for i := range min(n, 5) {
			c.Losses = append(c.Losses, loadgen.Loss{At: at(10*time.Second + time.Duration(i)*time.Millisecond), Class: loadgen.Refused})
		}
		return &c
	}
	if o := Judge(lossy(409), events, w, e); o.Bound == nil || hasProblem(o, "more than the pod") {
		t.Errorf("409 lost is within the bound: %v", o.Problems)
	}
	if o := Judge(lossy(3000), events, w, e); !hasProblem(o, "lost 3000, more than the pod the fault struck could lose: at most the 2550 requests pod old-b") {
		t.Errorf("3000 lost is beyond it: %v", o.Problems)
	}
	if o := Judge(lossy(10), events[:4], w, e); !hasProblem(o, "no fault struck a pod") {
		t.Errorf("no fault: %v", o.Problems)
	}
}

func hasProblem(o Outcome, s string) bool {
	for _, p := range o.Problems {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

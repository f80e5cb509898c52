package loadgen

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Verdict is what a run says about the server under test.
type Verdict string

// Verdicts. NotJudged is a harness failure, never a pass: the load asked
// for was not delivered, the run was interrupted, or the generator was
// too late to tell a server's timeout from its own.
const (
	Lossless  Verdict = "lossless"
	Lossy     Verdict = "lossy"
	NotJudged Verdict = "not judged"
)

// The delivered-load rule: a run is judged only if it achieved at least
// MinRateRatio of its target rate overall, and no BucketWidth of the
// judged window sent less than MinBucketShare of its share, unless the
// server held it (see Delivery.Held).
const (
	MinRateRatio   = 0.99
	MinBucketShare = 0.5
	// MaxGeneratorStall is the longest the generator may stand still in
	// the judged window: a client that catches up in bursts fills every
	// bucket yet leaves the server without requests for most of each.
	// Half a bucket, as the gap rule tolerates.
	MaxGeneratorStall = BucketWidth / 2
	// MaxSendLate is how late requests may leave during a stall of the
	// generator's watch for the stall to be its clock's alone: the load
	// went out on schedule (a timer of the watch waited on an idle
	// scheduler, docs/stalls.md) and nothing is voided.
	MaxSendLate = MaxGeneratorStall / 2
	// maxGapsListed bounds Delivery.Gaps; the count stays exact.
	maxGapsListed = 100
)

// Delivery says whether the load asked for was sent.
type Delivery struct {
	Delivered bool    `json:"delivered"`
	RateRatio float64 `json:"rate_ratio"`
	FromMs    int64   `json:"from_ms"`
	ToMs      int64   `json:"to_ms"`
	CheckedMs int64   `json:"window_ms"` // the width of one checked window
	GapCount  int     `json:"load_gap_count"`
	Gaps      []Gap   `json:"load_gaps"`
	// Held are windows that sent less than half their share because the
	// server sat on the requests, not because the client failed to send:
	// long-lived load is a closed loop (a fixed set of connections, each
	// waiting for its answer before the next request), its connections
	// spent at least half the window waiting on the server, and the
	// generator did not stand still then (a stalled client's own requests
	// look held too). The held requests were on the wire through the
	// window and are judged like any other; the hold shows as latency.
	HeldCount int   `json:"server_held_count"`
	Held      []Gap `json:"server_held"`
	// Stalls counts the spans of MaxGeneratorStall or more in the window
	// in which the generator itself stood still where the verdict needs
	// load (the critical spans, when given): nothing was sent then,
	// whatever the buckets say.
	Stalls int `json:"generator_stalls"`
	// SentThrough are stalls of the generator's watch through which the
	// requests still left on time (Bucket.LateMs below MaxSendLate):
	// its clock stood still, the load did not. They void nothing.
	SentThrough int `json:"stalls_sent_through,omitempty"`
	// OwnStalls: how many of Stalls the witness ran through on time.
	OwnStalls     int     `json:"own_generator_stalls,omitempty"`
	LongestStall  float64 `json:"longest_generator_stall_ms"`
	FirstStallOff int64   `json:"first_generator_stall_t_ms,omitempty"`
	// Spared are the stalls of MaxGeneratorStall or more, and the gaps,
	// that do not void the verdict: MachineStalls the whole machine
	// shared (the pods under test were paused with the generator), Outside
	// ones of the generator's own outside every critical span.
	MachineStalls int `json:"machine_stalls,omitempty"`
	OutsideStalls int `json:"stalls_outside_critical_spans,omitempty"`
	OutsideGaps   int `json:"gaps_outside_critical_spans,omitempty"`
	CriticalSpans int `json:"critical_spans,omitempty"`
	// Coverage is the share of the window in which the generator ran
	// and sent its share (1 when nothing stood still and no window fell
	// short).
	Coverage float64 `json:"coverage"`
}

// Span is a stretch of time.
type Span struct {
	From, To time.Time
}

// covered is how much time the spans cover together (overlaps once).
func covered(spans []Span) time.Duration {
	spans = slices.Clone(spans)
	slices.SortFunc(spans, func(a, b Span) int { return a.From.Compare(b.From) })
	var total time.Duration
	var end time.Time
	for _, s := range spans {
		if s.From.Before(end) {
			s.From = end
		}
		if s.To.After(s.From) {
			total += s.To.Sub(s.From)
			end = s.To
		}
	}
	return total
}

func overlaps(spans []Span, from, to time.Time) bool {
	for _, s := range spans {
		if s.From.Before(to) && from.Before(s.To) {
			return true
		}
	}
	return false
}

// Gap is a window of the timeline that sent less than half its share.
type Gap struct {
	OffsetMs int64   `json:"t_ms"`
	Sent     int     `json:"sent"`
	Share    float64 `json:"share"`
	// HeldShare: the share of the window's connection time spent
	// waiting on the server (long-lived load).
	HeldShare float64 `json:"held_share,omitempty"`
}

func (d Delivery) String() string {
	if d.Delivered {
		s := fmt.Sprintf("delivered (%.1f%% of the rate, no gaps)", 100*d.RateRatio)
		if d.HeldCount > 0 {
			h := d.Held[0]
			s = fmt.Sprintf("delivered (%.1f%% of the rate; the server held the connections in %d windows of %dms, first at +%.1fs: %d sent of %.0f, %.0f%% of the connection time waiting on it)",
				100*d.RateRatio, d.HeldCount, d.CheckedMs, float64(h.OffsetMs)/1000, h.Sent, h.Share, 100*h.HeldShare)
		}
		return s + d.spared()
	}
	s := fmt.Sprintf("%.1f%% of the target rate (need %.0f%%)", 100*d.RateRatio, 100*MinRateRatio)
	if d.GapCount > 0 {
		g := d.Gaps[0]
		s += fmt.Sprintf(", %d gaps of %dms below half the rate (first at +%.1fs: %d sent of %.0f)", d.GapCount, d.CheckedMs, float64(g.OffsetMs)/1000, g.Sent, g.Share)
	}
	if d.Stalls > 0 {
		where := ""
		if d.CriticalSpans > 0 {
			where = " within the moments the verdict rests on"
		}
		s += fmt.Sprintf(", the load generator stood still %d times for %dms or more%s (first at +%.1fs, longest %.0fms): nothing was sent then",
			d.Stalls, MaxGeneratorStall.Milliseconds(), where, float64(d.FirstStallOff)/1000, d.LongestStall)
		if d.OwnStalls > 0 {
			s += fmt.Sprintf(" (%d of them nodrop's alone: an independent process ran on time meanwhile, and so did the pods)", d.OwnStalls)
		}
	}
	return s + d.spared()
}

// Spared says which stalls and gaps did not void the verdict, and the
// coverage they left; "" when none.
func (d Delivery) Spared() string { return strings.TrimPrefix(d.spared(), "; spared: ") }

// spared says which stalls and gaps did not void the verdict, and the
// coverage they left.
func (d Delivery) spared() string {
	var parts []string
	if d.MachineStalls > 0 {
		parts = append(parts, fmt.Sprintf("%d stalls the whole machine shared (the pods stood still too)", d.MachineStalls))
	}
	if n := d.OutsideStalls + d.OutsideGaps; n > 0 {
		parts = append(parts, fmt.Sprintf("%d stalls or gaps of the generator's own outside the %d moments the verdict rests on", n, d.CriticalSpans))
	}
	if d.SentThrough > 0 {
		parts = append(parts, fmt.Sprintf("%d stalls of the generator's watch through which the requests still left on time", d.SentThrough))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("; spared: %s; load covered %.1f%% of the window", strings.Join(parts, ", "), 100*d.Coverage)
}

// Judgement is the verdict of a run over a window, and why.
type Judgement struct {
	Verdict  Verdict
	Reasons  []string // why it was not judged
	Delivery Delivery
}

// Judge applies the delivered-load rule to the window [from, to] (zero
// times mean the run's first and last send) and decides the verdict.
// Losses count wherever they happen; the window bounds only the gap check.
func (r *Report) Judge(from, to time.Time) Judgement {
	return r.JudgeAcross(from, to, nil)
}

// JudgeAcross is Judge where the verdict needs load only across the
// critical spans (the moments a configuration's mechanism names, and the
// losses): a stall of the generator's own or a gap in the load outside
// all of them is counted (Delivery) but does not void the verdict. With no
// spans, the whole window is critical. A stall the whole machine shared
// (Stall.Whose) never voids it: the pods stood still with the generator.
func (r *Report) JudgeAcross(from, to time.Time, critical []Span) Judgement {
	j := Judgement{Delivery: r.delivery(from, to, critical)}
	switch {
	case r.Total == 0:
		j.Reasons = append(j.Reasons, "no request was sent")
	case r.Interrupted:
		j.Reasons = append(j.Reasons, fmt.Sprintf("interrupted after %.1fs of %.1fs", r.DurationSec, r.PlannedSec))
	}
	for _, g := range r.Generators {
		if g.Problem != "" {
			j.Reasons = append(j.Reasons, fmt.Sprintf("generator %s: %s", g.Name, g.Problem))
		}
	}
	if n := r.Generator.TimeoutsDuringStalls; n > 0 {
		j.Reasons = append(j.Reasons, fmt.Sprintf("%d timeouts came while the load generator itself stood still for %.0fms or more (max stall %.0fms): they may be its own delay, not the server's",
			n, r.Generator.StallLimitMs, r.Generator.MaxStallMs))
	}
	switch {
	case len(j.Reasons) > 0:
		j.Verdict = NotJudged
	case r.Lost > 0:
		j.Verdict = Lossy
	case !j.Delivery.Delivered:
		j.Verdict = NotJudged
		j.Reasons = append(j.Reasons, "load not delivered: "+j.Delivery.String())
	default:
		j.Verdict = Lossless
	}
	return j
}

// delivery checks the rate over the whole run and the gaps over the
// window [from, to] by whole windows of at least one bucket, wide enough
// to expect two requests.
func (r *Report) delivery(from, to time.Time, critical []Span) Delivery {
	d := Delivery{CriticalSpans: len(critical)}
	if r.RateTarget > 0 {
		d.RateRatio = r.RateAchieved / float64(r.RateTarget)
	}
	if from.IsZero() || from.Before(r.Started) {
		from = r.Started
	}
	if to.IsZero() {
		to = r.LastSent
	}
	d.FromMs, d.ToMs = r.Offset(from).Milliseconds(), r.Offset(to).Milliseconds()
	share := float64(r.RateTarget) * BucketWidth.Seconds()
	k := 1
	if share > 0 && share < 2 {
		k = int(math.Ceil(2 / share))
	}
	d.CheckedMs = int64(k) * BucketWidth.Milliseconds()
	dc := deliveryCheck{r: r, d: &d, from: from, to: to, critical: critical}
	for _, st := range r.Generator.Stalls {
		if st.Whose == StallMachine {
			dc.machine = append(dc.machine, Span{st.At, st.At.Add(ms2d(st.Ms))})
		}
	}
	dc.gaps(k, share)
	if d.Gaps == nil {
		d.Gaps = []Gap{}
	}
	if d.Held == nil {
		d.Held = []Gap{}
	}
	dc.stalls()
	d.Coverage = 1
	if span := to.Sub(from); span > 0 {
		d.Coverage = max(0, 1-float64(covered(dc.uncovered))/float64(span))
	}
	d.Delivered = r.Total > 0 && d.RateRatio >= MinRateRatio && d.GapCount == 0 && d.Stalls == 0
	return d
}

// deliveryCheck is one delivery's judgement in progress: the window,
// the moments the verdict rests on, the machine's own stalls, and the
// spans the load did not cover.
type deliveryCheck struct {
	r         *Report
	d         *Delivery
	from, to  time.Time
	critical  []Span
	machine   []Span
	uncovered []Span // gaps and stalls of the generator's own
}

// needed reports whether the verdict rests on [from, to).
func (dc *deliveryCheck) needed(from, to time.Time) bool {
	return dc.critical == nil || overlaps(dc.critical, from, to)
}

// gaps finds the windows of k buckets that sent less than their share:
// a gap voids the verdict unless the machine stood still then, the
// verdict does not rest on it, or long-lived load was held by the server.
func (dc *deliveryCheck) gaps(k int, share float64) {
	r, d, from, to := dc.r, dc.d, dc.from, dc.to
	first := int(math.Ceil(float64(r.Offset(from)) / float64(BucketWidth)))
	last := int(r.Offset(to) / BucketWidth) // exclusive: buckets wholly before to
	for i := max(first, 0); i+k <= last; i += k {
		sent := 0
		for j := i; j < i+k; j++ {
			if j < len(r.Timeline) {
				sent += r.Timeline[j].Sent
			}
		}
		if float64(sent) >= MinBucketShare*share*float64(k) {
			continue
		}
		g := Gap{OffsetMs: int64(i) * BucketWidth.Milliseconds(), Sent: sent, Share: share * float64(k)}
		lo, hi := r.bucketStart(i), r.bucketStart(i+k)
		switch {
		case overlaps(dc.machine, lo, hi):
			// The machine stood still then: nothing reached the server
			// because nothing of it ran either.
			continue
		case !dc.needed(lo, hi):
			d.OutsideGaps++
			dc.uncovered = append(dc.uncovered, Span{lo, hi})
			continue
		}
		dc.uncovered = append(dc.uncovered, Span{lo, hi})
		if g.HeldShare = r.heldShare(i, k); g.HeldShare >= MinBucketShare && r.Generator.stalledDuring(r.bucketStart(i), r.bucketStart(i+k)) == 0 {
			d.HeldCount++
			if len(d.Held) < maxGapsListed {
				d.Held = append(d.Held, g)
			}
			continue
		}
		d.GapCount++
		if len(d.Gaps) < maxGapsListed {
			d.Gaps = append(d.Gaps, g)
		}
	}
}

// stalls counts the generator's stalls of MaxGeneratorStall or more in
// the window: one voids the verdict unless the machine stood still, the
// verdict does not rest on it, or the load went out through it anyway.
func (dc *deliveryCheck) stalls() {
	r, d, from, to := dc.r, dc.d, dc.from, dc.to
	for _, st := range r.Generator.Stalls {
		end := st.At.Add(ms2d(st.Ms))
		if st.Ms < ms(MaxGeneratorStall) || !end.After(from) || !st.At.Before(to) {
			continue
		}
		switch {
		case st.Whose == StallMachine:
			d.MachineStalls++
			continue
		case !dc.needed(st.At, end):
			d.OutsideStalls++
			dc.uncovered = append(dc.uncovered, Span{maxTime(st.At, from), minTime(end, to)})
			continue
		}
		if r.lateDuring(st.At, end) < ms(MaxSendLate) {
			d.SentThrough++
			continue
		}
		dc.uncovered = append(dc.uncovered, Span{maxTime(st.At, from), minTime(end, to)})
		if st.Whose == StallOwn {
			d.OwnStalls++
		}
		if d.Stalls == 0 || r.Offset(st.At).Milliseconds() < d.FirstStallOff {
			d.FirstStallOff = r.Offset(st.At).Milliseconds()
		}
		d.Stalls++
		d.LongestStall = max(d.LongestStall, st.Ms)
	}
}

// heldShare is the share of the connection time of buckets [i, i+k) that
// long-lived load spent waiting on the server; 0 for other load.
func (r *Report) heldShare(i, k int) float64 {
	slots := r.Connections * max(1, r.Client.InFlight)
	if slots == 0 {
		return 0
	}
	held := 0.0
	for j := i; j < i+k && j < len(r.Timeline); j++ {
		held += r.Timeline[j].HeldMs
	}
	return held / (float64(slots) * float64(k) * ms(BucketWidth))
}

// lateDuring is the most any request due within [from, to] left late,
// by whole buckets, in milliseconds; MaxSendLate or more where the
// timeline does not reach (nothing known is nothing vouched for).
func (r *Report) lateDuring(from, to time.Time) float64 {
	first, last := int(r.Offset(from)/BucketWidth), int(r.Offset(to)/BucketWidth)
	if first < 0 || last >= len(r.Timeline) {
		return ms(MaxSendLate)
	}
	late := 0.0
	for i := first; i <= last; i++ {
		late = max(late, r.Timeline[i].LateMs)
	}
	return late
}

func (r *Report) bucketStart(i int) time.Time { return r.Started.Add(time.Duration(i) * BucketWidth) }

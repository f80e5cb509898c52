package scenario

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// Expectation is what one run of one configuration must show.
type Expectation struct {
	Verdict loadgen.Verdict
	// Classes are the loss classes the mechanism produces, each with the
	// sentence that says why. Every loss of a lossy run must be of one of
	// them; a loss of any other class is unexplained.
	Classes map[loadgen.Class]string
	// LossStarts, when set, are the moments the mechanism says losses
	// begin: every episode of losses must start at one of them.
	LossStarts []Timing
	// IdleCloseRaces: every loss must be an idle-close race.
	IdleCloseRaces bool
	// RacesAllowed: a lossless expectation that still holds with up to
	// this many losses if every one is an idle-close race, a request
	// written as the server's close of an idle connection landed. It is
	// for a server that closes idle kept-alive connections without
	// Connection: close: clients that look before reuse move on, but no
	// client can avoid the one request already on its way.
	RacesAllowed int
	// GoAwayRacesAllowed: a lossless expectation that still holds with up
	// to this many losses if every one is a GOAWAY race (an RPC that
	// crossed a draining server's GOAWAY, refused unprocessed; gRPC
	// clients send it again by themselves, strict load counts it).
	GoAwayRacesAllowed int
	// MayLoseNothing: a lossy expectation whose mechanism is a race, so a
	// run may lose nothing. It is then no negative control on its own;
	// what it does lose must still be of its classes and start at its
	// moments.
	MayLoseNothing bool
	// Reconnects: long-lived clients must (Some) or must not (None) have
	// been asked to move to a new connection; with Some, a close that
	// raced a request (an allowed idle-close race) counts as the server
	// asking.
	Reconnects Count
	// Closes: the server must (Some) have closed long-lived connections,
	// whether the client saw the close in time and moved on (a reconnect)
	// or had a request on the wire (a broken connection). It is the claim
	// of a drain that closes without telling anyone: how many clients
	// notice in time is a race, that every connection ends is not.
	Closes Count
	// Versions, when set, is the version that must answer every request
	// before the disruption and the one that must answer every request
	// after it has settled.
	Versions *VersionChange
	// BoundedByFault: the losses of a fault that struck one pod (a kill,
	// a crash) are at most what that pod could have been sent while it
	// was down (FaultBound).
	BoundedByFault bool
	// Why is the mechanism, in one sentence.
	Why string
}

// Timing is "losses start Delay after an event of kind After" (whose
// detail contains Detail, when set: one of an app's lifecycle lines).
type Timing struct {
	After  probes.Kind
	Detail string
	Delay  time.Duration
	// Tolerance is how far a burst may start from that moment (default
	// DefaultTolerance).
	Tolerance time.Duration
	// Why names the moment in the user's terms ("SIGKILL at the end of the
	// grace period").
	Why string
}

// DefaultTolerance is how far a burst of losses may start from the moment
// its mechanism predicts: the watch sees a change up to a second or so
// after it happened.
const DefaultTolerance = 2 * time.Second

// EpisodeGap joins bursts of losses into one episode: an outage in which
// some requests still get through is one episode with one cause.
const EpisodeGap = 2 * time.Second

// DataPlaneLag is how long after the API shows a disruption settled
// (every old pod gone) kube-proxy may still send to the old state. Its
// rules follow the API about a second later on average (its own
// kubeproxy_network_programming_duration_seconds: 1.0 s mean over 281
// changes here), and under a rollout on two busy cores more: timeouts to
// a gone pod's address were measured up to 2.2 s after the pod was gone,
// refusals 25 ms after a new endpoint turned ready. A loss sent later
// than this is unexplained.
const DataPlaneLag = 4 * time.Second

// SYNSentTimeout is how long the kernel keeps the conntrack entry of a
// connection attempt nobody answered (nf_conntrack_tcp_timeout_syn_sent,
// 120 s by default). kube-proxy deletes no TCP conntrack entry when an
// endpoint goes (kubernetes#101607), so an attempt sent to a pod that
// is gone leaves an entry that still points at it, and a later
// connection from the same client address and port follows that entry
// to the gone pod and times out, even once kube-proxy's rules are up to
// date. A client opening a thousand connections a second reuses its
// ports within seconds: measured here, timeouts of requests sent 4.4 s
// after the last old pod was gone, in two of four runs without a
// preStop; none in four runs with the timeout set to 3 s.
const SYNSentTimeout = 120 * time.Second

// CloseTimeout is how long the kernel keeps the conntrack entry of a
// connection the server refused (nf_conntrack_tcp_timeout_close, 10 s).
// The kernel takes a SYN that matches such an entry for a new connection
// only after a FIN, or a reset from the client's side: after the
// server's reset it lets the SYN follow the entry to the pod that refused
// it. A client that reuses the source port within those 10 s is refused
// again while that pod is there, and gets no answer once it is gone:
// measured here, one connection attempt unanswered 7.6 s after the last
// refusal of a killed pod, 0.2 s after that pod's endpoint went.
const CloseTimeout = 10 * time.Second

func (t Timing) String() string {
	s := fmt.Sprintf("%s after %s", t.Delay, t.After)
	if t.Tolerance > 0 { // a window
		s = fmt.Sprintf("%s to %s after %s", max(0, t.Delay-t.Tolerance), t.Delay+t.Tolerance, t.After)
	}
	if t.Detail != "" {
		s += " " + t.Detail
	}
	if t.Why != "" {
		s += " (" + t.Why + ")"
	}
	return s
}

// Count is a claim about how many times something happened.
type Count int

// Counts.
const (
	Any  Count = iota // no claim
	None              // never
	Some              // at least once
)

// VersionChange names the version answering before and after.
type VersionChange struct{ Before, After string }

// ClassList is the expectation's classes in report order.
func (e Expectation) ClassList() []loadgen.Class {
	var out []loadgen.Class
	for _, c := range loadgen.LossClasses {
		if _, ok := e.Classes[c]; ok {
			out = append(out, c)
		}
	}
	return out
}

// Window is when the disruption happened, as the run saw it.
type Window struct {
	// Trigger: the disruption was applied (rollout started, upgrade
	// command run).
	Trigger time.Time
	// Settled: the disruption is over (every old pod gone, the upgrade
	// complete). Requests sent after it must not be lost.
	Settled time.Time
	// End: the load stopped.
	End time.Time
}

// Outcome is the judgement of one run against its expectation.
type Outcome struct {
	Expected loadgen.Verdict `json:"expected"`
	Got      loadgen.Verdict `json:"got"`
	// Problems are the claims that failed, in plain words; none means
	// the run showed what the configuration claims.
	Problems []string `json:"problems,omitempty"`
	// NotJudged says why the run could not be judged (then Got is
	// loadgen.NotJudged and Problems says so too).
	NotJudged []string         `json:"not_judged_because,omitempty"`
	Delivery  loadgen.Delivery `json:"delivery"`
	// Bound is the bound a fault's losses kept to, when claimed.
	Bound *FaultBound `json:"bound,omitempty"`
	// Spared are the losses of classes the mechanism lacks that the run's
	// evidence explains otherwise (followedOwnPort, sentToDeleted), one
	// line each.
	Spared []string `json:"spared,omitempty"`
}

// Passed reports whether the run showed what was claimed.
func (o Outcome) Passed() bool { return len(o.Problems) == 0 }

// Judge decides a run: the load must have been delivered from the
// trigger to the end, across every moment the verdict rests on
// (CriticalSpans), the verdict must be the expected one, and a lossy
// run must have lost the way its mechanism says (classes, timing, races,
// reconnects). Losses before the trigger or after the disruption settled
// are unexplained whatever the expectation.
func Judge(r *loadgen.Report, events []probes.Event, w Window, e Expectation) Outcome {
	j := r.JudgeAcross(w.Trigger, w.End, CriticalSpans(r, events, w, e))
	o := Outcome{Expected: e.Verdict, Got: j.Verdict, NotJudged: j.Reasons, Delivery: j.Delivery}
	if e.Verdict == loadgen.Lossless && e.RacesAllowed > 0 {
		o.Expected = loadgen.Verdict(fmt.Sprintf("lossless or ≤ %d idle-close races", e.RacesAllowed))
	}
	if e.Verdict == loadgen.Lossless && e.GoAwayRacesAllowed > 0 {
		o.Expected = loadgen.Verdict(fmt.Sprintf("lossless or ≤ %d GOAWAY races", e.GoAwayRacesAllowed))
	}
	if e.Verdict == loadgen.Lossy && e.MayLoseNothing {
		o.Expected = "lossy by a race, or lossless"
	}
	bad := func(format string, args ...any) { o.Problems = append(o.Problems, fmt.Sprintf(format, args...)) }
	if j.Verdict == loadgen.NotJudged {
		bad("not judged: %s", strings.Join(j.Reasons, "; "))
		return o
	}
	if before, after := lossesOutside(r, w); before+after > 0 {
		bad("unexplained loss: %d requests sent before the disruption and %d sent after it settled were lost", before, after)
	}
	racesOnly := r.Lost > 0 && r.Lost == r.IdleCloseRace+r.GoAwayRace && r.IdleCloseRace <= e.RacesAllowed && r.GoAwayRace <= e.GoAwayRacesAllowed
	if e.Verdict == loadgen.Lossless && r.Lost > 0 && !racesOnly {
		if why := cmp.Or(starvedCluster(r, events), starvedMachine(r)); why != "" {
			o.Got, o.NotJudged = loadgen.NotJudged, append(o.NotJudged, why)
			bad("not judged: %s", why)
			return o
		}
	}
	switch {
	case e.Verdict == loadgen.Lossless && j.Verdict != loadgen.Lossless && !racesOnly:
		// What the timeline says of each episode comes with it: a CI log
		// that keeps only the summary still says why.
		races := fmt.Sprintf("%d idle-close races, %d allowed", r.IdleCloseRace, e.RacesAllowed)
		if r.GoAwayRace > 0 || e.GoAwayRacesAllowed > 0 {
			races += fmt.Sprintf("; %d GOAWAY races, %d allowed", r.GoAwayRace, e.GoAwayRacesAllowed)
		}
		bad("expected no lost request, lost %d (%s; %s): %s", r.Lost, classList(r.LostByClass), races, strings.Join(Advise(r, events), "; "))
	case e.Verdict == loadgen.Lossy && j.Verdict != loadgen.Lossy && !e.MayLoseNothing:
		bad("a known-lossy configuration lost nothing: the harness missed it")
	}
	if e.Verdict == loadgen.Lossy && r.Lost > 0 {
		var problems []string
		problems, o.Spared, o.Bound = lossyProblems(r, events, w, e)
		o.Problems = append(o.Problems, problems...)
	}
	o.Problems = append(o.Problems, connectionProblems(r, e)...)
	if v := e.Versions; v != nil {
		o.Problems = append(o.Problems, versionProblems(r, w, *v)...)
	}
	return saturated(r, o)
}

// saturated makes a run that did not show its claim not judged when the
// machine did not hold its load through it: some task waited for a CPU
// MaxCalibrationPressure or more of the run, the bar a calibration with
// nothing happening must stay under. On such a machine kube-proxy lags,
// answers wait up to the client's timeout and a proxy's open-loop
// clients pile up connections: what the run showed may be the machine's.
// A run that showed its claim stays judged.
func saturated(r *loadgen.Report, o Outcome) Outcome {
	if o.Passed() || r.Generator.CPUPressure < MaxCalibrationPressure {
		return o
	}
	shown := o.Problems[0]
	if n := 300; len(shown) > n {
		for !utf8.RuneStart(shown[n]) {
			n--
		}
		shown = shown[:n] + "…"
	}
	why := fmt.Sprintf("the machine did not hold the load through the run: some task waited for a CPU %.0f%% of it, over the %.0f%% a calibration allows with nothing happening, so what the run showed may be the machine's (%s): run at a lower --rate or on a larger machine",
		100*r.Generator.CPUPressure, 100*MaxCalibrationPressure, shown)
	o.Got, o.NotJudged, o.Problems = loadgen.NotJudged, append(o.NotJudged, why), []string{"not judged: " + why}
	return o
}

// lossyProblems are how a lossy run's losses differ from its mechanism:
// classes it does not produce (less those the run's evidence explains,
// spared), episodes that start when the claim says none does, more than
// a fault's bound, losses that should all be idle-close races.
func lossyProblems(r *loadgen.Report, events []probes.Event, w Window, e Expectation) (problems, spared []string, bound *FaultBound) {
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	foreign, sparedLines, sparedKeys := foreignLosses(r, events, e)
	if len(foreign) > 0 {
		bad("unexplained loss: %s, classes the mechanism (%s) does not produce: %s", classList(foreign), classNames(e.ClassList()), strings.Join(foreignDetail(r, events, foreign, sparedKeys), "; "))
	}
	if len(e.LossStarts) > 0 {
		var off []string
		eps := probes.Episodes(probes.Bursts(r, events), EpisodeGap)
		stale := staleConntrack(eps)
		for i, ep := range eps {
			if !e.startsWhenClaimed(ep, events) && stale[i].After.IsZero() && !reusedPorts(r, ep) && !starvedEpisode(r, ep, e) {
				off = append(off, fmt.Sprintf("+%.3fs", r.Offset(ep.Start).Seconds()))
			}
		}
		if len(off) > 0 {
			var claims []string
			for _, t := range e.LossStarts {
				claims = append(claims, t.String())
			}
			bad("losses should start %s (±%s where no window is given); %d episodes do not: at %s", strings.Join(claims, " or "), DefaultTolerance, len(off), strings.Join(off, ", "))
		}
	}
	if e.BoundedByFault {
		switch b, ok := faultBound(r, events, w); {
		case !ok:
			bad("losses should be bounded by the pod a fault struck, and no fault struck a pod")
		case r.Lost > b.Max:
			bad("lost %d, more than the pod the fault struck could lose: %s", r.Lost, b)
		default:
			bound = &b
		}
	}
	if e.IdleCloseRaces && r.IdleCloseRace != r.Lost {
		bad("every loss should be an idle-close race; %d of %d are", r.IdleCloseRace, r.Lost)
	}
	return problems, sparedLines, bound
}

// connectionProblems: the clients told, or not told, to reconnect, and
// long-lived connections closed, as claimed.
func connectionProblems(r *loadgen.Report, e Expectation) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	switch {
	case e.Reconnects == Some && r.Reconnects+r.IdleCloseRace == 0:
		// A close that raced a request (an allowed idle-close race) is
		// the server closing the connection too: when every connection's
		// close raced one, none was left to see a polite one.
		bad("clients should have been told to reconnect (Connection: close), and none was")
	case e.Reconnects == None && r.Reconnects > 0:
		bad("no client should have seen a close, %d reconnected", r.Reconnects)
	}
	if e.Closes == Some && r.Reconnects+r.BrokenConnections == 0 {
		bad("the server should have closed long-lived connections, and none was closed")
	}
	return problems
}

// versionProblems: only v.Before answered before the disruption, only
// v.After after it settled, and both answered.
func versionProblems(r *loadgen.Report, w Window, v VersionChange) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, b := range r.Timeline {
		at := r.Started.Add(time.Duration(b.OffsetMs) * time.Millisecond)
		end := at.Add(loadgen.BucketWidth)
		for ver, n := range b.ByVersion {
			switch {
			case end.Before(w.Trigger) && ver != v.Before:
				bad("version %s answered %d requests before the disruption (at +%.1fs); want only %s", ver, n, float64(b.OffsetMs)/1000, v.Before)
			case at.After(w.Settled) && ver != v.After:
				bad("version %s answered %d requests after the rollout (at +%.1fs); want only %s", ver, n, float64(b.OffsetMs)/1000, v.After)
			}
		}
	}
	if r.ByVersion[v.Before] == 0 || r.ByVersion[v.After] == 0 {
		bad("want both %s and %s to answer, got %v", v.Before, v.After, r.ByVersion)
	}
	return problems
}

func (e Expectation) startsWhenClaimed(ep probes.Burst, events []probes.Event) bool {
	for _, t := range e.LossStarts {
		tol := t.Tolerance
		if tol == 0 {
			tol = DefaultTolerance
		}
		if probes.StartsAfter(ep, events, t.After, t.Detail, t.Delay, tol) {
			return true
		}
	}
	return false
}

// stale is an episode that follows earlier losses through conntrack
// entries the client's reused source ports led back to.
type stale struct {
	// After is the end of the earlier losses it follows; zero if it
	// follows none.
	After time.Time
	// Refused: it follows refusals (CloseTimeout), not unanswered attempts
	// (SYNSentTimeout).
	Refused bool
}

// staleConntrack marks the episodes made only of timeouts that start
// within SYNSentTimeout of an earlier episode's timeouts (new connections
// that reused the ports of attempts sent to a gone pod), or made only of
// connection attempts nobody answered that start within CloseTimeout of an
// earlier episode's refusals (new connections that reused the ports of
// refused ones, led to the pod that refused them once it is gone).
func staleConntrack(eps []probes.Burst) []stale {
	out := make([]stale, len(eps))
	// By generator ("" when one sent the load): a port's entry is in its
	// own client's node.
	lastTimeout, lastRefused := map[string]time.Time{}, map[string]time.Time{}
	for i, ep := range eps {
		gens := lossGenerators(ep)
		onlyTimeouts := ep.Lost == ep.ByClass[loadgen.Timeout]
		t, tok := latestOfEvery(lastTimeout, gens)
		rf, rok := latestOfEvery(lastRefused, gens)
		switch {
		case tok && onlyTimeouts && !ep.Start.Before(t) && ep.Start.Sub(t) <= SYNSentTimeout:
			out[i] = stale{After: t}
		case rok && onlyTimeouts && ep.Unanswered == ep.Lost && !ep.Start.Before(rf) && ep.Start.Sub(rf) <= CloseTimeout:
			out[i] = stale{After: rf, Refused: true}
		}
		for _, g := range gens {
			if ep.ByClass[loadgen.Timeout] > 0 {
				lastTimeout[g] = ep.End
			}
			if ep.ByClass[loadgen.Refused] > 0 {
				lastRefused[g] = ep.End
			}
		}
	}
	return out
}

// lossGenerators are the generators that lost requests in an episode;
// "" alone when one generator sent the whole load.
func lossGenerators(ep probes.Burst) []string {
	if len(ep.ByGenerator) == 0 {
		return []string{""}
	}
	return slices.Sorted(maps.Keys(ep.ByGenerator))
}

// latestOfEvery is the latest of the times of gens, if every one has a
// time.
func latestOfEvery(times map[string]time.Time, gens []string) (time.Time, bool) {
	var latest time.Time
	for _, g := range gens {
		t, ok := times[g]
		if !ok {
			return time.Time{}, false
		}
		if t.After(latest) {
			latest = t
		}
	}
	return latest, true
}

// reusedPorts reports whether every loss of an episode was a connection
// attempt from a client port whose earlier connection the server refused
// or reset (within CloseTimeout), or whose earlier attempt went
// unanswered (within SYNSentTimeout): a new connection that reused the
// port and followed the old one's conntrack entry back to the pod that
// refused or reset it, or to where nobody answered. Such an entry is not
// reopened for a new SYN (its last packet, the RST, came from the
// server), and each refusal keeps it 10 s more, so one burst of resets
// and refusals (a listener closed with connections queued) comes back
// in waves, a port cycle apart, for as long as the pod refuses, then as
// timeouts once it is gone (seen: the Traefik restart, 26, 32, 12
// refusals and 12 timeouts, every one from such a port). Such an
// episode follows the first; its start is not the mechanism's.
func reusedPorts(r *loadgen.Report, ep probes.Burst) bool {
	followers := portFollowers(r)
	n := 0
	for _, l := range r.Losses {
		if l.At.Before(ep.Start) || l.At.After(ep.End) {
			continue
		}
		if !followers[keyOf(l)] {
			return false
		}
		n++
	}
	return n > 0
}

// lossKey names one loss.
type lossKey struct {
	seq  uint64
	at   int64
	port int
}

func keyOf(l loadgen.Loss) lossKey { return lossKey{l.Seq, l.At.UnixNano(), l.LocalPort} }

// portFollowers are the losses that were connection
// attempts from a client port whose previous failed use left a conntrack
// entry a new SYN from that port follows instead of making its own: a
// connection the server refused or reset (the entry is kept CloseTimeout,
// and not reopened for a new SYN), or an attempt nobody answered (kept
// SYNSentTimeout). Such an attempt goes where the earlier one went: to the
// pod that refused or reset it, or nowhere once that pod is gone.
func portFollowers(r *loadgen.Report) map[lossKey]bool {
	losses := slices.Clone(r.Losses) // in the order they ended; here, sent
	slices.SortStableFunc(losses, func(a, b loadgen.Loss) int { return a.At.Compare(b.At) })
	type port struct {
		generator string
		n         int
	}
	last := map[port]loadgen.Loss{} // by client port: the latest failed attempt so far
	out := map[lossKey]bool{}
	for _, l := range losses {
		p := port{l.Generator, l.LocalPort}
		prev, ok := last[p]
		if ok && l.LocalPort != 0 && (l.NoConnection || l.Class == loadgen.Refused) &&
			((prev.Class != loadgen.Timeout && l.At.Sub(prev.At) <= CloseTimeout) ||
				(prev.Class == loadgen.Timeout && prev.NoConnection && l.At.Sub(prev.At) <= SYNSentTimeout)) {
			out[keyOf(l)] = true
		}
		if l.Class == loadgen.Refused || l.Class == loadgen.Reset || (l.Class == loadgen.Timeout && l.NoConnection) {
			last[p] = l
		}
	}
	return out
}

// lossesOutside counts losses of requests sent before the trigger and
// after the disruption settled. A timeout sent after it settled is not
// counted when the run had timeouts during the disruption, less than
// SYNSentTimeout earlier: a connection that reused the port of an attempt
// sent to a gone pod (see SYNSentTimeout).
func lossesOutside(r *loadgen.Report, w Window) (before, after int) {
	settled := w.Settled.Add(DataPlaneLag)
	var lastTimeout time.Time // of a request sent during the disruption
	for _, l := range r.Losses {
		if l.Class == loadgen.Timeout && !l.At.Before(w.Trigger) && !l.At.After(settled) && l.At.After(lastTimeout) {
			lastTimeout = l.At
		}
	}
	// A client that fails requests at once during a reconnect backoff
	// (gRPC's) still does so after the disruption settled: a refusal
	// within that backoff of one on the same connection during it is the
	// same episode.
	backoff := time.Duration(r.Client.ReconnectBackoffMs * float64(time.Millisecond))
	lastRefused := map[int]time.Time{} // per connection, during the disruption
	for _, l := range r.Losses {
		if backoff > 0 && l.Class == loadgen.Refused && !l.At.Before(w.Trigger) && !l.At.After(settled) {
			lastRefused[l.Conn] = l.At
		}
	}
	// An outage the disruption began that runs on past its settling
	// (new pods, ready by the API, that do not serve yet) is one episode:
	// a loss after it settled within EpisodeGap of one the disruption
	// explains is that episode's tail.
	var lastDuring time.Time
	var late []loadgen.Loss
	for _, l := range r.Losses {
		switch {
		case !w.Trigger.IsZero() && l.At.Before(w.Trigger):
			before++
		case !w.Settled.IsZero() && l.At.After(settled):
			late = append(late, l)
		case l.At.After(lastDuring):
			lastDuring = l.At
		}
	}
	slices.SortFunc(late, func(a, b loadgen.Loss) int { return a.At.Compare(b.At) })
	for _, l := range late {
		chained := !lastDuring.IsZero() && l.At.Sub(lastDuring) <= EpisodeGap
		staleSYN := l.Class == loadgen.Timeout && !lastTimeout.IsZero() && l.At.Sub(lastTimeout) <= SYNSentTimeout
		last, ok := lastRefused[l.Conn]
		inBackoff := ok && l.Class == loadgen.Refused && l.At.Sub(last) <= backoff
		if chained || staleSYN || inBackoff {
			// Explained; the episode goes on while explained losses do.
			lastDuring = l.At
			continue
		}
		after++
	}
	return before, after
}

// foreignLosses counts the losses of classes the mechanism does not
// produce, by class, leaving out, and saying in a line each, the
// connection attempts the run's evidence explains otherwise
// (sentToDeleted, followedOwnPort).
func foreignLosses(r *loadgen.Report, events []probes.Event, e Expectation) (map[loadgen.Class]int, []string, map[lossKey]bool) {
	out := map[loadgen.Class]int{}
	for c, n := range r.LostByClass {
		if _, ok := e.Classes[c]; !ok && n > 0 {
			out[c] = n
		}
	}
	if len(out) == 0 {
		return out, nil, nil
	}
	var spared []string
	keys := map[lossKey]bool{}
	// Timeouts the machine's starvation explains are counted on the
	// timeline, which has every loss.
	starvedBuckets := map[int]int{}
	if _, ok := out[loadgen.Timeout]; ok {
		starvedBuckets = starvedTimeouts(r)
		lines, n := starvedSpans(r, starvedBuckets)
		spared = append(spared, lines...)
		if out[loadgen.Timeout] -= n; out[loadgen.Timeout] <= 0 {
			delete(out, loadgen.Timeout)
		}
	}
	followers := portFollowers(r)
	for _, l := range r.Losses {
		if l.Class == loadgen.Timeout && starvedBuckets[int(l.At.Sub(r.Started)/loadgen.BucketWidth)] > 0 {
			keys[keyOf(l)] = true
			continue
		}
		if _, ok := out[l.Class]; !ok {
			continue
		}
		var why string
		switch {
		case sentToDeleted(events, l):
			why = "a node sent it to a pod already being deleted: kube-proxy's rules lagged its endpoint"
		case followedOwnPort(events, l, followers):
			why = "it reused a client port whose earlier connection the server had just reset or refused, and its SYN followed that connection's conntrack entry back to where it went"
		default:
			continue
		}
		keys[keyOf(l)] = true
		spared = append(spared, fmt.Sprintf("%s sent at +%.3fs from client port %d: %s", l.Class, r.Offset(l.At).Seconds(), l.LocalPort, why))
		if out[l.Class]--; out[l.Class] == 0 {
			delete(out, l.Class)
		}
	}
	return out, spared, keys
}

// followedOwnPort reports whether a lost connection attempt came from a
// client port whose earlier connection the server had just reset or
// refused (portFollowers), and no trace says otherwise: a live trace, when
// there is one, saw no node make a new entry for it; a lookup after the
// load found no entry for it, or the closed one that refusal or reset
// left. The kernel let its
// SYN follow the earlier connection's entry back to the pod that reset it:
// refused while that pod is there, unanswered once it is gone. That is how
// Linux tracks connections, whatever the configuration; a configuration
// that claims to lose nothing still fails on it.
func followedOwnPort(events []probes.Event, l loadgen.Loss, followers map[lossKey]bool) bool {
	if !followers[keyOf(l)] {
		return false
	}
	t := tracedAt(events, l)
	if t == nil {
		return true
	}
	for _, s := range []string{notTakenIn, noEntry, closedEntry} {
		if strings.Contains(t.Detail, s) {
			return true
		}
	}
	return false
}

// sentToDeleted reports whether a lost connection attempt is one the live
// trace saw a node send to a pod of the run after that pod's deletion
// began: kube-proxy's rules still held the pod, whose endpoint was
// already going (they follow the API a second or more later). Refused
// once its app has stopped listening, unanswered once its address is
// gone: that is the data plane's lag, whatever the configuration, not a
// class of the configuration's own mechanism. A configuration that
// claims to lose nothing still fails on it.
func sentToDeleted(events []probes.Event, l loadgen.Loss) bool {
	t := tracedAt(events, l)
	if t == nil || t.Pod == "" {
		return false
	}
	for _, e := range events {
		if e.Kind == probes.PodDeleting && e.Pod == t.Pod && !e.At.After(l.At) {
			return true
		}
	}
	return false
}

// maxForeignShown bounds how many losses of a class the mechanism does
// not produce are described one by one.
const maxForeignShown = 4

// foreignDetail describes the first losses of the classes in foreign, one
// by one: when each was sent, whether it had a connection (a new one, or
// one kept alive, and to which pod), and what the same client port lost
// before it. It is the evidence a reader needs to find their cause, from a
// CI log that keeps nothing else.
func foreignDetail(r *loadgen.Report, events []probes.Event, foreign map[loadgen.Class]int, spared map[lossKey]bool) []string {
	losses := slices.Clone(r.Losses)
	slices.SortStableFunc(losses, func(a, b loadgen.Loss) int { return a.At.Compare(b.At) })
	var out []string
	shown, total := 0, 0
	for _, n := range foreign {
		total += n
	}
	last := map[int]loadgen.Loss{} // by client port: its latest loss so far
	for _, l := range losses {
		prev, seen := last[l.LocalPort]
		if l.LocalPort != 0 {
			last[l.LocalPort] = l
		}
		if _, ok := foreign[l.Class]; !ok || spared[keyOf(l)] {
			continue
		}
		if shown == maxForeignShown {
			out = append(out, fmt.Sprintf("%d more", total-shown))
			break
		}
		shown++
		s := describeLoss(r, l, prev, seen)
		if e := tracedAt(events, l); e != nil {
			s += "; " + e.Detail
		}
		out = append(out, s)
	}
	return out
}

// tracedAt is what a node's conntrack table said of a lost connection
// attempt (nil if nothing).
func tracedAt(events []probes.Event, l loadgen.Loss) *probes.Event {
	port := fmt.Sprintf(" client port %d:", l.LocalPort)
	for i, e := range events {
		if e.Kind == probes.Conntrack && e.At.Equal(l.At) && strings.Contains(e.Detail, port) {
			return &events[i]
		}
	}
	return nil
}

// describeLoss says what one lost request was, in a line: prev is the
// latest earlier loss from the same client port, if seen.
func describeLoss(r *loadgen.Report, l, prev loadgen.Loss, seen bool) string {
	s := fmt.Sprintf("%s sent at +%.3fs", l.Class, r.Offset(l.At).Seconds())
	switch {
	case l.NoConnection:
		s += ", a connection attempt"
	case l.ConnReused:
		s += fmt.Sprintf(", on a kept-alive connection idle %.0f ms", l.IdleMs)
	default:
		s += ", on a new connection"
	}
	if l.LocalPort != 0 {
		s += fmt.Sprintf(" from client port %d", l.LocalPort)
	}
	if l.Pod != "" {
		s += " to pod " + l.Pod
	}
	if l.FailedAfterMs > 0 {
		s += fmt.Sprintf(", failed after %.0f ms", l.FailedAfterMs)
	}
	if l.GeneratorStallMs > 0 {
		s += fmt.Sprintf(" (the generator stood still %.0f ms meanwhile)", l.GeneratorStallMs)
	}
	if l.Error != "" {
		s += fmt.Sprintf(" (%s)", l.Error)
	}
	if seen {
		s += fmt.Sprintf("; that port's previous loss: %s %.3fs before", prev.Class, l.At.Sub(prev.At).Seconds())
	} else if l.LocalPort != 0 {
		s += "; no earlier loss from that port"
	}
	return s
}

func classList(m map[loadgen.Class]int) string {
	if s := loadgen.ClassCounts(m); s != "" {
		return s
	}
	return "none"
}

func classNames(cs []loadgen.Class) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}

// Reasons lists the expectation's class sentences, one per line, for a
// reader: why each class can appear.
func (e Expectation) Reasons() string {
	var b strings.Builder
	for _, c := range slices.Sorted(maps.Keys(e.Classes)) {
		fmt.Fprintf(&b, "%s: %s\n", c, e.Classes[c])
	}
	return b.String()
}

package scenario_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/internal/procs"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
)

// run builds a judged report by hand: 1000 requests/s for 10 s, every
// bucket full, with the given losses (offset from the start, class, race).
type loss struct {
	at    time.Duration
	class loadgen.Class
	race  bool
}

var t0 = time.Unix(1_000_000, 0)

func report(losses ...loss) *loadgen.Report {
	r := &loadgen.Report{Started: t0, RateTarget: 1000, RateAchieved: 1000, Total: 10000, LostByClass: map[loadgen.Class]int{}, ByVersion: map[string]int{}}
	for i := range 100 {
		r.Timeline = append(r.Timeline, loadgen.Bucket{OffsetMs: int64(i) * 100, Sent: 100})
	}
	r.LastSent = t0.Add(10 * time.Second)
	for _, l := range losses {
		r.Lost++
		r.LostByClass[l.class]++
		if l.race {
			r.IdleCloseRace++
		}
		r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(l.at), Class: l.class, IdleCloseRace: l.race})
		if b := &r.Timeline[int(l.at/loadgen.BucketWidth)]; b.LostByClass == nil {
			b.LostByClass = map[loadgen.Class]int{l.class: 1}
		} else {
			b.LostByClass[l.class]++
		}
	}
	r.OK = r.Total - r.Lost
	return r
}

// grpcRefused is gRPC load that lost one RPC refused at each moment, all
// on connection 1.
func grpcRefused(at ...time.Duration) *loadgen.Report {
	r := report()
	r.Protocol, r.Client.ReconnectBackoffMs = "grpc", 3200
	for _, a := range at {
		r.Lost++
		r.LostByClass[loadgen.Refused]++
		r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(a), Class: loadgen.Refused, Conn: 1})
	}
	r.OK = r.Total - r.Lost
	return r
}

// goAwayRaces is a report whose every loss is a GOAWAY race.
func goAwayRaces(n int) *loadgen.Report {
	r := report()
	for range n {
		r.Lost++
		r.GoAwayRace++
		r.LostByClass[loadgen.Refused]++
		r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(7 * time.Second), Class: loadgen.Refused, GoAwayRace: true})
	}
	r.OK = r.Total - r.Lost
	return r
}

var window = scenario.Window{Trigger: t0.Add(2 * time.Second), Settled: t0.Add(4 * time.Second), End: t0.Add(10 * time.Second)}

var deleted = []probes.Event{{At: t0.Add(3 * time.Second), Kind: probes.PodDeleting, Pod: "old"}}

func lossy(classes ...loadgen.Class) scenario.Expectation {
	e := scenario.Expectation{Verdict: loadgen.Lossy, Classes: map[loadgen.Class]string{}}
	for _, c := range classes {
		e.Classes[c] = "because"
	}
	return e
}

func TestJudge(t *testing.T) {
	killAt := []scenario.Timing{{After: probes.PodDeleting, Delay: 4 * time.Second}}
	for _, tc := range []struct {
		name   string
		r      *loadgen.Report
		e      scenario.Expectation
		pass   bool
		reason string
	}{
		{"lossless as claimed", report(), scenario.Expectation{Verdict: loadgen.Lossless}, true, ""},
		{"lossless claim, a loss", report(loss{5 * time.Second, loadgen.Reset, false}), scenario.Expectation{Verdict: loadgen.Lossless}, false, "expected no lost request"},
		{"negative control caught", report(loss{7 * time.Second, loadgen.Reset, false}), lossy(loadgen.Reset), true, ""},
		{"negative control missed", report(), lossy(loadgen.Reset), false, "harness missed it"},
		{"a class the mechanism does not produce", report(loss{7 * time.Second, loadgen.Reset, false}, loss{7 * time.Second, loadgen.Timeout, false}), lossy(loadgen.Reset), false, "unexplained loss: timeout 1"},
		{"a loss before the trigger", report(loss{time.Second, loadgen.Reset, false}, loss{7 * time.Second, loadgen.Reset, false}), lossy(loadgen.Reset), false, "1 requests sent before the disruption"},
		{"a loss after it settled", report(loss{9 * time.Second, loadgen.Reset, false}), scenario.Expectation{Verdict: loadgen.Lossless}, false, "sent after it settled"},
		{"losses when the mechanism says", report(loss{7 * time.Second, loadgen.Reset, false}), func() scenario.Expectation { e := lossy(loadgen.Reset); e.LossStarts = killAt; return e }(), true, ""},
		{"losses at another moment", report(loss{3500 * time.Millisecond, loadgen.Reset, false}), func() scenario.Expectation { e := lossy(loadgen.Reset); e.LossStarts = killAt; return e }(), false, "losses should start 4s after pod deleting"},
		{"one episode, several bursts", report(loss{7 * time.Second, loadgen.Reset, false}, loss{7800 * time.Millisecond, loadgen.Reset, false}), func() scenario.Expectation { e := lossy(loadgen.Reset); e.LossStarts = killAt; return e }(), true, ""},
		{"a loss while the data plane catches up", report(loss{7500 * time.Millisecond, loadgen.Timeout, false}), lossy(loadgen.Timeout), true, ""},
		{"late timeouts after timeouts in the disruption (stale conntrack)", report(loss{7 * time.Second, loadgen.Timeout, false}, loss{9500 * time.Millisecond, loadgen.Timeout, false}), func() scenario.Expectation { e := lossy(loadgen.Timeout); e.LossStarts = killAt; return e }(), true, ""},
		{"late timeouts with none in the disruption", report(loss{7 * time.Second, loadgen.Reset, false}, loss{9500 * time.Millisecond, loadgen.Timeout, false}), lossy(loadgen.Reset, loadgen.Timeout), false, "1 sent after it settled"},
		{"an outage the disruption began, running on past its settling", report(loss{7 * time.Second, loadgen.HTTP5xx, false}, loss{7900 * time.Millisecond, loadgen.HTTP5xx, false}, loss{9500 * time.Millisecond, loadgen.HTTP5xx, false}), lossy(loadgen.HTTP5xx), true, ""},
		{"an outage on past the settling, bridged by refusals in a gRPC backoff", func() *loadgen.Report {
			r := grpcRefused(7500*time.Millisecond, 10*time.Second)
			r.Lost++
			r.LostByClass[loadgen.Refused]++
			r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(11800 * time.Millisecond), Class: loadgen.Refused, Conn: 2})
			r.OK = r.Total - r.Lost
			return r
		}(), lossy(loadgen.Refused), true, ""},
		{"a loss after a gap past the settling", report(loss{7 * time.Second, loadgen.HTTP5xx, false}, loss{9100 * time.Millisecond, loadgen.HTTP5xx, false}), lossy(loadgen.HTTP5xx), false, "1 sent after it settled"},
		{"a late reset after timeouts", report(loss{7 * time.Second, loadgen.Timeout, false}, loss{9500 * time.Millisecond, loadgen.Reset, false}), func() scenario.Expectation {
			e := lossy(loadgen.Timeout, loadgen.Reset)
			e.LossStarts = killAt
			return e
		}(), false, "1 sent after it settled"},
		{"races claimed, not all races", report(loss{7 * time.Second, loadgen.EOF, true}, loss{7 * time.Second, loadgen.EOF, false}), func() scenario.Expectation { e := lossy(loadgen.EOF); e.IdleCloseRaces = true; return e }(), false, "1 of 2 are"},
		{"races allowed", report(loss{7 * time.Second, loadgen.EOF, true}), scenario.Expectation{Verdict: loadgen.Lossless, RacesAllowed: 1}, true, ""},
		{"more races than allowed", report(loss{7 * time.Second, loadgen.EOF, true}, loss{7 * time.Second, loadgen.EOF, true}), scenario.Expectation{Verdict: loadgen.Lossless, RacesAllowed: 1}, false, "expected no lost request"},
		{"a gRPC client in its reconnect backoff after the disruption", grpcRefused(7500*time.Millisecond, 10500*time.Millisecond), lossy(loadgen.Refused), true, ""},
		{"a gRPC refusal after the backoff", grpcRefused(7*time.Second, 10900*time.Millisecond), lossy(loadgen.Refused), false, "sent after it settled"},
		{"GOAWAY races allowed", goAwayRaces(2), scenario.Expectation{Verdict: loadgen.Lossless, GoAwayRacesAllowed: 2}, true, ""},
		{"GOAWAY races not allowed", goAwayRaces(1), scenario.Expectation{Verdict: loadgen.Lossless}, false, "1 GOAWAY races, 0 allowed"},
		{"GOAWAY races are not idle-close races", goAwayRaces(1), scenario.Expectation{Verdict: loadgen.Lossless, RacesAllowed: 1}, false, "expected no lost request"},
		{"more GOAWAY races than allowed", goAwayRaces(3), scenario.Expectation{Verdict: loadgen.Lossless, GoAwayRacesAllowed: 2}, false, "3 GOAWAY races, 2 allowed"},
		{"a race that lost nothing", report(), func() scenario.Expectation { e := lossy(loadgen.EOF); e.MayLoseNothing = true; return e }(), true, ""},
		{"a race that lost the wrong class", report(loss{7 * time.Second, loadgen.Refused, false}), func() scenario.Expectation { e := lossy(loadgen.EOF); e.MayLoseNothing = true; return e }(), false, "classes the mechanism"},
		{"a race that lost at the wrong moment", report(loss{3500 * time.Millisecond, loadgen.EOF, false}), func() scenario.Expectation {
			e := lossy(loadgen.EOF)
			e.MayLoseNothing, e.LossStarts = true, killAt
			return e
		}(), false, "losses should start"},
		{"reconnects claimed, none", report(), scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.Some}, false, "told to reconnect"},
		{"reconnects claimed, every close an allowed race", report(loss{7 * time.Second, loadgen.Reset, true}), scenario.Expectation{Verdict: loadgen.Lossless, Reconnects: scenario.Some, RacesAllowed: 1}, true, ""},
		{"closes claimed, none", report(), func() scenario.Expectation {
			e := lossy(loadgen.EOF)
			e.MayLoseNothing, e.Closes = true, scenario.Some
			return e
		}(), false, "none was closed"},
		{"closes claimed, every connection broke", func() *loadgen.Report {
			r := report(loss{7 * time.Second, loadgen.EOF, false})
			r.BrokenConnections = 1
			return r
		}(), func() scenario.Expectation { e := lossy(loadgen.EOF); e.Closes = scenario.Some; return e }(), true, ""},
	} {
		o := scenario.Judge(tc.r, deleted, window, tc.e)
		if o.Passed() != tc.pass || (tc.reason != "" && !strings.Contains(strings.Join(o.Problems, "\n"), tc.reason)) {
			t.Errorf("%s: passed %v, problems %q; want passed %v with %q", tc.name, o.Passed(), o.Problems, tc.pass, tc.reason)
		}
	}
}

// A gap in the load between the trigger and the end makes the run not
// judged, whatever it claims; the same gap before the trigger does not.
func TestJudgeNeedsDeliveredLoad(t *testing.T) {
	r := report()
	r.Timeline[50].Sent = 10
	for _, e := range []scenario.Expectation{{Verdict: loadgen.Lossless}, lossy(loadgen.Reset)} {
		o := scenario.Judge(r, nil, window, e)
		if o.Got != loadgen.NotJudged || o.Passed() || !strings.Contains(o.Problems[0], "load not delivered") {
			t.Errorf("%s claim with a gap: got %q, problems %q", e.Verdict, o.Got, o.Problems)
		}
	}
	r = report()
	r.Timeline[5].Sent = 10
	if o := scenario.Judge(r, nil, window, scenario.Expectation{Verdict: loadgen.Lossless}); !o.Passed() {
		t.Errorf("gap before the trigger: %q", o.Problems)
	}
}

// An image change must show the old version before and only the new one
// after the rollout settled.
func TestJudgeVersions(t *testing.T) {
	r := report()
	set := func(i int, v string) {
		r.Timeline[i].ByVersion = map[string]int{v: 100}
		r.ByVersion[v] += 100
	}
	for i := range 100 {
		set(i, map[bool]string{true: "v1", false: "v2"}[i < 40])
	}
	e := scenario.Expectation{Verdict: loadgen.Lossless, Versions: &scenario.VersionChange{Before: "v1", After: "v2"}}
	if o := scenario.Judge(r, nil, window, e); !o.Passed() {
		t.Errorf("v1 then v2: %q", o.Problems)
	}
	r.Timeline[90].ByVersion["v1"] = 3
	if o := scenario.Judge(r, nil, window, e); o.Passed() || !strings.Contains(o.Problems[0], "version v1 answered 3 requests after the rollout") {
		t.Errorf("v1 after the rollout: %q", o.Problems)
	}
}

func TestSummarySaysWhenNothingWasJudged(t *testing.T) {
	var b strings.Builder
	if err := scenario.WriteSummary(&b, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "nothing was judged") || strings.Contains(b.String(), "✓") {
		t.Errorf("empty summary:\n%s", b.String())
	}
	b.Reset()
	rows := []scenario.Row{
		{Config: "a", Expected: loadgen.Lossless, Got: loadgen.Lossless, Passed: false, Problem: "timing check failed"},
		{Config: "b", Problem: "no verdict: calibration"},
	}
	scenario.WriteSummary(&b, rows)
	if strings.Contains(b.String(), "✓") || strings.Count(b.String(), "✗") != 2 || !strings.Contains(b.String(), "2 failed") {
		t.Errorf("failed specs must show ✗:\n%s", b.String())
	}
	// A log cut to its tail still says why.
	tail := b.String()[strings.LastIndex(b.String(), "|"):]
	if !strings.Contains(tail, "a, , : timing check failed") || !strings.Contains(tail, "no verdict: calibration") {
		t.Errorf("the failures must be listed whole below the table:\n%s", b.String())
	}
}

func TestRowOnOneLine(t *testing.T) {
	row := scenario.Row{Config: "no-prestop", Disruption: "rollout restart", Load: "fresh", Total: 12750, Lost: 933,
		ByClass:  map[loadgen.Class]int{loadgen.Timeout: 836, loadgen.Refused: 97},
		Expected: loadgen.Lossy, Got: loadgen.Lossy, Passed: true}
	want := "no-prestop, rollout restart, fresh: 12750 requests, 933 lost (refused 97, timeout 836); expected lossy, got lossy ✓"
	if got := row.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	row.Passed, row.Problem = false, "lost 3 after it settled"
	if got := row.String(); !strings.HasSuffix(got, "✗ lost 3 after it settled") {
		t.Errorf("a failed row must say why: %s", got)
	}
}

// Refusals that come back in waves from the same client ports (each
// reused port follows its refused connection's conntrack entry back to
// the pod that refused it, then nowhere once it is gone) are the first
// episode's, not episodes of their own whose start the claim must match;
// refusals from ports never refused before are.
func TestJudgeTimingSparesReusedPorts(t *testing.T) {
	at := func(d time.Duration, c loadgen.Class, port int) loadgen.Loss {
		return loadgen.Loss{At: t0.Add(d), Class: c, LocalPort: port, NoConnection: true}
	}
	build := func(later func(i int) int) *loadgen.Report {
		r := report()
		var ls []loadgen.Loss
		for i := range 40 {
			c := loadgen.Refused
			if i%2 == 0 { // a listener closed with connections queued: resets, then refusals
				c = loadgen.Reset
			}
			ls = append(ls, at(3500*time.Millisecond+time.Duration(i)*time.Millisecond, c, 100+i))
		}
		for i := range 10 {
			ls = append(ls, at(7*time.Second+time.Duration(i)*time.Millisecond, loadgen.Refused, later(i)))
		}
		for i := range 5 {
			// Ended last, listed last: a 2 s timeout.
			ls = append(ls, at(9*time.Second+time.Duration(i)*time.Millisecond, loadgen.Timeout, later(i)))
		}
		for _, l := range ls {
			r.Lost++
			r.LostByClass[l.Class]++
		}
		r.OK = r.Total - r.Lost
		r.Losses = ls
		return r
	}
	w := scenario.Window{Trigger: t0.Add(2 * time.Second), Settled: t0.Add(9500 * time.Millisecond), End: t0.Add(10 * time.Second)}
	e := lossy(loadgen.Refused, loadgen.Reset, loadgen.Timeout)
	e.LossStarts = []scenario.Timing{{After: probes.PodDeleting}}
	if o := scenario.Judge(build(func(i int) int { return 100 + i }), deleted, w, e); !o.Passed() {
		t.Errorf("waves from reused ports: %q", o.Problems)
	}
	if adv := scenario.Advise(build(func(i int) int { return 100 + i }), deleted); len(adv) < 2 || !strings.Contains(adv[1], "whose earlier attempts were refused, reset") {
		t.Errorf("the second wave's advice does not say it follows the first: %q", adv)
	}
	if o := scenario.Judge(build(func(i int) int { return 500 + i }), deleted, w, e); o.Passed() || !strings.Contains(strings.Join(o.Problems, "\n"), "losses should start") {
		t.Errorf("refusals from new ports at another moment passed: %q", o.Problems)
	}
}

// A loss of a class the mechanism does not produce is described one by
// one in the problem: a CI log that keeps nothing else must still say
// what the request was and what its client port did before.
func TestJudgeDescribesForeignLosses(t *testing.T) {
	r := report(loss{7 * time.Second, loadgen.Reset, false}, loss{7100 * time.Millisecond, loadgen.Refused, false})
	r.Losses[0].LocalPort, r.Losses[0].ConnReused, r.Losses[0].IdleMs = 41000, true, 3
	r.Losses[1].LocalPort, r.Losses[1].NoConnection = 41000, true
	traced := probes.Event{At: r.Losses[1].At, Kind: probes.Conntrack, Detail: "refused attempt from client port 41000: the node sent it to 10.244.0.7 (pod old)"}
	o := scenario.Judge(r, append(deleted, traced), window, lossy(loadgen.Reset))
	got := strings.Join(o.Problems, "\n")
	for _, want := range []string{"unexplained loss: refused 1", "refused sent at +7.100s, a connection attempt from client port 41000", "that port's previous loss: reset 0.100s before; refused attempt from client port 41000: the node sent it to 10.244.0.7 (pod old)"} {
		if !strings.Contains(got, want) {
			t.Errorf("problem %q does not say %q", got, want)
		}
	}
}

// A connection attempt the live trace saw a node send to a pod already
// being deleted is the data plane's lag, not a class of the
// configuration's mechanism; one sent to a pod still serving is not.
func TestJudgeSparesAttemptsSentToADeletedPod(t *testing.T) {
	build := func() *loadgen.Report {
		r := report(loss{7 * time.Second, loadgen.Reset, false}, loss{7100 * time.Millisecond, loadgen.Refused, false})
		r.Losses[1].LocalPort, r.Losses[1].NoConnection = 41000, true
		return r
	}
	traced := func(pod string) probes.Event {
		return probes.Event{At: t0.Add(7100 * time.Millisecond), Kind: probes.Conntrack, Pod: pod, Detail: "refused attempt from client port 41000: the node sent it to 10.244.0.7 (pod " + pod + ")"}
	}
	if o := scenario.Judge(build(), append(deleted, traced("old")), window, lossy(loadgen.Reset)); !o.Passed() {
		t.Errorf("an attempt sent to the deleted pod: %q", o.Problems)
	}
	if o := scenario.Judge(build(), append(deleted, traced("new")), window, lossy(loadgen.Reset)); o.Passed() {
		t.Error("an attempt sent to a pod nobody deleted passed")
	}
	if o := scenario.Judge(build(), deleted, window, lossy(loadgen.Reset)); o.Passed() {
		t.Error("an attempt nothing traced passed")
	}
	if o := scenario.Judge(build(), append(deleted, traced("old")), window, scenario.Expectation{Verdict: loadgen.Lossless}); o.Passed() {
		t.Error("a lossless claim passed with losses")
	}
}

// Seen on 2026-11-26 (start-sh-no-exec, keep-alive): as SIGKILL cut the
// old pod's kept-alive connections, two clients reconnected from the very
// ports the pod had just reset, and no node made a new entry for either:
// their SYNs followed the reset connections' entries back to the pod,
// refused while it was there, unanswered 4 s later once it was gone. A
// configuration's claim need not list what Linux does to a reused port; a
// refusal from a port nothing had reset, or one a node sent anew, is
// still unexplained.
func TestJudgeSparesAttemptsThatFollowedTheirPortsEntry(t *testing.T) {
	notTaken := func(at time.Duration, port int) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: probes.Conntrack, Detail: fmt.Sprintf("refused attempt from client port %d: no node took it in as a new connection: it matched an entry", port)}
	}
	build := func(refusedPort int) *loadgen.Report {
		r := report(
			loss{3 * time.Second, loadgen.Reset, false},
			loss{7 * time.Second, loadgen.Reset, false},
			loss{7100 * time.Millisecond, loadgen.Refused, false},
			loss{7150 * time.Millisecond, loadgen.Timeout, false},
		)
		r.Losses[0].LocalPort, r.Losses[0].ConnReused = 39324, true
		r.Losses[1].LocalPort, r.Losses[1].ConnReused = 39308, true
		r.Losses[2].LocalPort, r.Losses[2].NoConnection = refusedPort, true
		r.Losses[3].LocalPort, r.Losses[3].NoConnection = 39324, true
		return r
	}
	events := append(slices.Clone(deleted), notTaken(7100*time.Millisecond, 39308), notTaken(7150*time.Millisecond, 39324))
	if o := scenario.Judge(build(39308), events, window, lossy(loadgen.Reset)); !o.Passed() {
		t.Errorf("attempts that followed their ports' entries: %q", o.Problems)
	}
	if o := scenario.Judge(build(39308), deleted, window, lossy(loadgen.Reset)); !o.Passed() {
		t.Errorf("with no trace, the ports alone: %q", o.Problems)
	}
	if o := scenario.Judge(build(40000), events, window, lossy(loadgen.Reset)); o.Passed() || !strings.Contains(strings.Join(o.Problems, "\n"), "unexplained loss: refused 1,") {
		t.Errorf("a refusal from a port nothing had reset: %q", o.Problems)
	}
	// Seen on 2026-12-06 (sidecar-prestop-app-only, fresh): a port
	// refused by the proxy that closed its listener timed out 5 s later,
	// and once the load was over no node held an entry for it.
	noEntry := probes.Event{At: t0.Add(7150 * time.Millisecond), Kind: probes.Conntrack, Detail: "unanswered attempt from client port 39324: no entry for it on any node: dropped before the node tracked it"}
	if o := scenario.Judge(build(39308), append(slices.Clone(deleted), notTaken(7100*time.Millisecond, 39308), noEntry), window, lossy(loadgen.Reset)); !o.Passed() {
		t.Errorf("a follower no node held an entry for afterwards: %q", o.Problems)
	}
	// And (the same variant, a CI run): the node's entry for it was the
	// closed one, to the pod that had reset the port 7 s before.
	closed := probes.Event{At: t0.Add(7150 * time.Millisecond), Kind: probes.Conntrack, Detail: "unanswered attempt from client port 39324: sent to 10.244.0.171 (pod old), entry CLOSE (perhaps a later connection from the same port)"}
	if o := scenario.Judge(build(39308), append(slices.Clone(deleted), notTaken(7100*time.Millisecond, 39308), closed), window, lossy(loadgen.Reset)); !o.Passed() {
		t.Errorf("a follower whose entry was the closed one: %q", o.Problems)
	}
	sentAnew := append(slices.Clone(deleted), probes.Event{At: t0.Add(7100 * time.Millisecond), Kind: probes.Conntrack, Pod: "new", Detail: "refused attempt from client port 39308: the node sent it to 10.244.0.9 (pod new)"}, notTaken(7150*time.Millisecond, 39324))
	if o := scenario.Judge(build(39308), sentAnew, window, lossy(loadgen.Reset)); o.Passed() {
		t.Error("a refusal a node sent anew to a pod nobody deleted passed")
	}
}

// A stall of the generator's own voids the verdict where the pods did
// something (a pod deleted at +3s: critical until the data plane caught
// up, +7s), and not in the quiet stretch after it; a lossless claim with
// its critical moment stalled is still not judged, and a stall the whole
// machine shared voids nothing.
func TestJudgeNeedsLoadOnlyWhereTheVerdictRests(t *testing.T) {
	lossless := scenario.Expectation{Verdict: loadgen.Lossless}
	stalled := func(at time.Duration, whose loadgen.StallKind) *loadgen.Report {
		r := report()
		r.Generator.Stalls = []loadgen.Stall{{At: t0.Add(at), Ms: 80, Whose: whose}}
		// What was due during the stall left 80 ms late.
		for i := int(at / loadgen.BucketWidth); i <= int((at+80*time.Millisecond)/loadgen.BucketWidth); i++ {
			r.Timeline[i].LateMs = 80
		}
		return r
	}
	late := scenario.Window{Trigger: window.Trigger, Settled: t0.Add(3500 * time.Millisecond), End: window.End}
	for _, tc := range []struct {
		name  string
		r     *loadgen.Report
		judge bool
	}{
		{"own stall at the deletion", stalled(3100*time.Millisecond, loadgen.StallOwn), false},
		{"own stall long after every event", stalled(9*time.Second, loadgen.StallOwn), true},
		{"machine stall at the deletion", stalled(3100*time.Millisecond, loadgen.StallMachine), true},
	} {
		o := scenario.Judge(tc.r, deleted, late, lossless)
		if (o.Got != loadgen.NotJudged) != tc.judge || (tc.judge && !o.Passed()) {
			t.Errorf("%s: got %q, problems %q; want judged %v", tc.name, o.Got, o.Problems, tc.judge)
		}
		if tc.judge && !strings.Contains(o.Delivery.String(), "spared") {
			t.Errorf("%s: the delivery does not say what it spared: %s", tc.name, o.Delivery)
		}
	}
	// No event at all: the recorder saw nothing, so the whole window is
	// critical.
	if o := scenario.Judge(stalled(9*time.Second, loadgen.StallOwn), nil, late, lossless); o.Got != loadgen.NotJudged {
		t.Errorf("no events, own stall at +9s: got %q", o.Got)
	}
}

// A lossless configuration that lost requests while the kubelet's own
// probes timed out is not judged, and says why; losses with no such
// starvation before them stay the configuration's.
func TestJudgeNamesAStarvedCluster(t *testing.T) {
	lossless := scenario.Expectation{Verdict: loadgen.Lossless}
	probe := probes.Event{At: t0.Add(2500 * time.Millisecond), Kind: probes.KubeEvent, Pod: "web-new",
		Detail: `Unhealthy: Readiness probe failed: command timed out: "/app --probe http://127.0.0.1:8080/readyz" timed out after 1s`}
	r := report(loss{at: 3100 * time.Millisecond, class: loadgen.Timeout}, loss{at: 3101 * time.Millisecond, class: loadgen.Timeout})
	o := scenario.Judge(r, append(slices.Clone(deleted), probe), window, lossless)
	if o.Got != loadgen.NotJudged || len(o.NotJudged) == 0 || !strings.Contains(o.NotJudged[0], "starved") || !strings.Contains(o.NotJudged[0], "web-new") {
		t.Errorf("losses 0.6s after a probe timed out: got %q, %q", o.Got, o.NotJudged)
	}
	o = scenario.Judge(r, deleted, window, lossless)
	if o.Got != loadgen.Lossy || o.Passed() {
		t.Errorf("the same losses with no probe timing out: got %q, %q", o.Got, o.Problems)
	}
	// A native gRPC probe that could not connect is a server not
	// listening yet, not a starved machine.
	notListening := probe
	notListening.Detail = `Unhealthy: Readiness probe failed: timeout: failed to connect service "10.244.0.19:9091" within 1s: context deadline exceeded`
	if o := scenario.Judge(r, append(slices.Clone(deleted), notListening), window, lossless); o.Got != loadgen.Lossy {
		t.Errorf("losses 0.6s after a gRPC probe found nothing listening: got %q, %q", o.Got, o.NotJudged)
	}
	// A probe that timed out long before the losses does not explain them.
	probe.At = t0.Add(-20 * time.Second)
	if o := scenario.Judge(r, append(slices.Clone(deleted), probe), window, lossless); o.Got != loadgen.Lossy {
		t.Errorf("a probe timeout 23s before: got %q", o.Got)
	}
}

// An episode in a second in which the machine was short of CPU says so;
// one in a quiet second does not.
func TestAdviceSaysWhenTheMachineWasShortOfCPU(t *testing.T) {
	r := report(loss{at: 3100 * time.Millisecond, class: loadgen.Refused}, loss{at: 7100 * time.Millisecond, class: loadgen.Refused})
	r.Generator.PressureBySecond = []float64{0, 0, 0, 0.85, 0, 0, 0, 0.1, 0, 0}
	r.Generator.BusySeconds = []loadgen.BusySecond{{At: r.Started.Add(3 * time.Second), Pressure: 0.85,
		Busiest: []procs.Use{{Name: "compile", Procs: 3, CPU: 1.5}, {Name: "kube-apiserver", Procs: 1, CPU: 0.4}}}}
	lines := scenario.Advise(r, deleted)
	if len(lines) != 2 {
		t.Fatalf("want one line an episode: %q", lines)
	}
	if !strings.Contains(lines[0], "short of CPU then: some task waited for one 85% of that second") {
		t.Errorf("the episode at +3.1s (85%% pressure): %s", lines[0])
	}
	if !strings.Contains(lines[0], "the busiest processes then: compile ×3 150%, kube-apiserver 40% of a CPU") {
		t.Errorf("the episode at +3.1s does not name what used the CPU: %s", lines[0])
	}
	if strings.Contains(lines[1], "short of CPU") {
		t.Errorf("the episode at +7.1s (10%% pressure): %s", lines[1])
	}
}

// A run judged although stalls or gaps were spared says so below the
// table, with the load's coverage.
func TestSummarySaysWhatWasSpared(t *testing.T) {
	r := report()
	r.Generator.Stalls = []loadgen.Stall{{At: t0.Add(9 * time.Second), Ms: 80, Whose: loadgen.StallOwn}}
	r.Timeline[90].LateMs = 80
	late := scenario.Window{Trigger: window.Trigger, Settled: t0.Add(3500 * time.Millisecond), End: window.End}
	o := scenario.Judge(r, deleted, late, scenario.Expectation{Verdict: loadgen.Lossless})
	row := scenario.NewRow("baseline-good", "rollout restart", "fresh", r, o, 14)
	var b strings.Builder
	if err := scenario.WriteSummary(&b, []scenario.Row{row}); err != nil {
		t.Fatal(err)
	}
	if !row.Passed || row.Coverage >= 1 || !strings.Contains(b.String(), "Judged with stalls or gaps that voided nothing") ||
		!strings.Contains(b.String(), "baseline-good, rollout restart, fresh: 1 stalls or gaps of the generator's own outside the") {
		t.Errorf("row %+v; summary:\n%s", row, b.String())
	}
}

// Timeouts among answers the machine kept waiting half the timeout or
// more, in a second of high CPU pressure, are the machine's: a lossless
// claim is not judged, and a lossy claim spares them as a foreign class.
// Timeouts among quick answers, or in a quiet second, stay the
// configuration's.
func TestJudgeNamesAStarvedMachine(t *testing.T) {
	lossless := scenario.Expectation{Verdict: loadgen.Lossless}
	starved := func(slowest float64, pressure float64, losses ...loss) *loadgen.Report {
		r := report(losses...)
		r.Client.TimeoutMs = 2000
		r.Generator.PressureBySecond = make([]float64, 10)
		r.Generator.PressureBySecond[3], r.Generator.PressureBySecond[5] = pressure, pressure
		r.Timeline[30].SlowestMs = slowest
		return r
	}
	timeouts := []loss{{at: 3100 * time.Millisecond, class: loadgen.Timeout}, {at: 3101 * time.Millisecond, class: loadgen.Timeout}}
	o := scenario.Judge(starved(1200, 0.85, timeouts...), deleted, window, lossless)
	if o.Got != loadgen.NotJudged || len(o.NotJudged) == 0 || !strings.Contains(o.NotJudged[0], "the machine was starved") || !strings.Contains(o.NotJudged[0], "up to 1.2s") {
		t.Errorf("timeouts among answers of 1.2 s at 85%% pressure: got %q, %q", o.Got, o.NotJudged)
	}
	for name, r := range map[string]*loadgen.Report{
		"quick answers":         starved(300, 0.85, timeouts...),
		"a quiet second":        starved(1200, 0.2, timeouts...),
		"a refusal too":         starved(1200, 0.85, append(slices.Clone(timeouts), loss{at: 3200 * time.Millisecond, class: loadgen.Refused})...),
		"slow long after":       starved(0, 0.85, timeouts...),
		"one in a quiet second": starved(1200, 0.85, append(slices.Clone(timeouts), loss{at: 7100 * time.Millisecond, class: loadgen.Timeout})...),
	} {
		if name == "slow long after" {
			r.Timeline[60].SlowestMs = 1500
		}
		if o := scenario.Judge(r, deleted, window, lossless); o.Got != loadgen.Lossy || o.Passed() {
			t.Errorf("%s: got %q, %q", name, o.Got, o.NotJudged)
		}
	}
	resets := scenario.Expectation{Verdict: loadgen.Lossy, Classes: map[loadgen.Class]string{loadgen.Reset: "queued connections reset"}}
	withReset := append(slices.Clone(timeouts), loss{at: 3000 * time.Millisecond, class: loadgen.Reset})
	if o := scenario.Judge(starved(1200, 0.85, withReset...), deleted, window, resets); !o.Passed() || len(o.Spared) != 1 || !strings.Contains(o.Spared[0], "2 timeouts sent from +3.1s to +3.2s: the machine was starved then") {
		t.Errorf("a lossy claim's timeouts among slow answers: problems %q, spared %q", o.Problems, o.Spared)
	}
	// An episode of such timeouts alone, away from the claimed moment,
	// is spared the mechanism's timing too.
	atDeletion := resets
	atDeletion.LossStarts = []scenario.Timing{{After: probes.PodDeleting}}
	late := starved(1200, 0.85, loss{at: 3000 * time.Millisecond, class: loadgen.Reset}, loss{at: 6100 * time.Millisecond, class: loadgen.Timeout})
	late.Generator.PressureBySecond[6], late.Timeline[61].SlowestMs = 0.85, 1200
	if o := scenario.Judge(late, deleted, window, atDeletion); !o.Passed() {
		t.Errorf("starved timeouts 3 s after the claimed moment: problems %q", o.Problems)
	}
	late.Timeline[61].SlowestMs = 300
	if o := scenario.Judge(late, deleted, window, atDeletion); o.Passed() {
		t.Errorf("timeouts among quick answers 3 s after the claimed moment passed")
	}
	// The timeline has every loss: timeouts past the loss details (kept
	// for the first loadgen.MaxLossDetails losses) are spared too.
	truncated := starved(1200, 0.85, withReset...)
	truncated.Losses, truncated.LossesTruncated = truncated.Losses[2:], true
	if o := scenario.Judge(truncated, deleted, window, resets); !o.Passed() || len(o.Spared) != 1 {
		t.Errorf("timeouts past the loss details: problems %q, spared %q", o.Problems, o.Spared)
	}
	if o := scenario.Judge(starved(300, 0.85, withReset...), deleted, window, resets); o.Passed() {
		t.Errorf("a lossy claim's timeouts among quick answers passed: spared %q", o.Spared)
	}
}

// A run that did not show its claim on a machine that did not hold its
// load (CPU pressure over the run at the calibration's bar or more) is
// not judged, the claim's problem kept in the reason; one that showed it,
// or failed on a machine that held it, stays judged.
func TestJudgeNeedsAMachineThatHeldTheRun(t *testing.T) {
	lossless := scenario.Expectation{Verdict: loadgen.Lossless}
	busy := func(pressure float64, losses ...loss) *loadgen.Report {
		r := report(losses...)
		r.Generator.CPUPressure = pressure
		return r
	}
	refused := loss{at: 3100 * time.Millisecond, class: loadgen.Refused}
	o := scenario.Judge(busy(0.84, refused), deleted, window, lossless)
	if o.Got != loadgen.NotJudged || len(o.Problems) != 1 || !strings.Contains(o.Problems[0], "did not hold the load through the run: some task waited for a CPU 84%") ||
		!strings.Contains(o.Problems[0], "expected no lost request, lost 1") {
		t.Errorf("a lossless claim that lost at 84%% pressure: got %q, %q", o.Got, o.Problems)
	}
	if o := scenario.Judge(busy(0.6, refused), deleted, window, lossless); o.Got != loadgen.Lossy || o.Passed() {
		t.Errorf("the same at 60%%: got %q, %q", o.Got, o.Problems)
	}
	if o := scenario.Judge(busy(0.9), deleted, window, lossless); o.Got != loadgen.Lossless || !o.Passed() {
		t.Errorf("nothing lost at 90%%: got %q, %q", o.Got, o.Problems)
	}
	resets := scenario.Expectation{Verdict: loadgen.Lossy, Classes: map[loadgen.Class]string{loadgen.Reset: "queued connections reset"}}
	if o := scenario.Judge(busy(0.9, loss{at: 3100 * time.Millisecond, class: loadgen.Reset}), deleted, window, resets); o.Got != loadgen.Lossy || !o.Passed() {
		t.Errorf("a lossy claim shown at 90%%: got %q, %q", o.Got, o.Problems)
	}
}

package loadgen

import (
	"bufio"
	"context"
	"maps"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// A report's memory is fixed, not a sample per request: two hours at
// 5,000 requests/s (36 million outcomes) fit in the same few MiB as one
// minute does. The bound stated in docs/load.md comes from here.
func TestReportMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("36 million outcomes")
	}
	const rate = 5000
	cfg, err := Config{Targets: []string{"http://127.0.0.1:1/"}, Rate: rate, Duration: MaxDuration}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	start := time.Now()
	acc := newAccumulator(cfg, start)
	n := int(MaxDuration.Seconds()) * rate
	step := time.Second / rate
	for i := range n {
		o := outcome{seq: uint64(i), at: start.Add(time.Duration(i) * step), latency: time.Duration(i%50) * time.Millisecond}
		if i%100000 == 0 {
			o.class = Reset
		}
		acc.add(o)
	}
	r := acc.report(Generator{})
	grown := heap() - before
	const bound = 8 << 20
	t.Logf("%d outcomes: report holds %.1f MiB (bound %d MiB)", n, float64(grown)/(1<<20), bound>>20)
	if grown > bound {
		t.Errorf("report grew by %d MiB for %d requests; want at most %d MiB", grown>>20, n, bound>>20)
	}
	if r.Total != n || r.Lost != n/100000 || r.Latency.Max != 49 || r.Latency.P50 < 23 || r.Latency.P50 > 26 {
		t.Errorf("total %d lost %d latency %+v", r.Total, r.Lost, r.Latency)
	}
	runtime.KeepAlive(r)
}

// Outcomes arrive out of order; the longest outage is still counted in
// send order.
func TestLongestOutageInSendOrder(t *testing.T) {
	cfg, _ := Config{Targets: []string{"http://127.0.0.1:1/"}, Duration: time.Second}.Normalize()
	start := time.Now()
	acc := newAccumulator(cfg, start)
	lost := map[uint64]bool{3: true, 4: true, 5: true, 6: true, 9: true}
	for _, seq := range []uint64{0, 2, 1, 6, 4, 3, 5, 8, 7, 9} {
		o := outcome{seq: seq, at: start.Add(time.Duration(seq) * time.Millisecond), latency: time.Millisecond}
		if lost[seq] {
			o.class = Refused
		}
		acc.add(o)
	}
	r := acc.report(Generator{})
	if r.LongestOutage == nil || r.LongestOutage.Requests != 4 || !r.LongestOutage.Start.Equal(start.Add(3*time.Millisecond)) {
		t.Fatalf("longest outage %+v; want requests 3-6", r.LongestOutage)
	}
}

// A timeout while the generator itself stood still is not the server's:
// the run is not judged. One while it ran on time is a loss.
func TestTimeoutDuringGeneratorStallIsNotJudged(t *testing.T) {
	cfg, _ := Config{Targets: []string{"http://127.0.0.1:1/"}, Rate: 10, Duration: time.Second, Timeout: time.Second}.Normalize()
	for _, tc := range []struct {
		stall time.Duration
		want  Verdict
	}{{0, Lossy}, {100 * time.Millisecond, Lossy}, {400 * time.Millisecond, NotJudged}} {
		start := time.Now()
		acc := newAccumulator(cfg, start)
		for i := range 10 {
			o := outcome{seq: uint64(i), at: start.Add(time.Duration(i) * 100 * time.Millisecond), latency: time.Millisecond}
			if i == 5 {
				o.class, o.latency = Timeout, time.Second
			}
			acc.add(o)
		}
		var w stallWatch
		if tc.stall >= StallThreshold {
			w.add(Stall{At: start.Add(700*time.Millisecond + stallTick), Ms: ms(tc.stall)})
		}
		g := Generator{Stalls: w.stalls, MaxStallMs: ms(w.max)}
		r := acc.report(g)
		if r.Verdict != tc.want {
			t.Errorf("stall %s during a timeout: verdict %q (%v), want %q", tc.stall, r.Verdict, r.NotJudged, tc.want)
		}
		if tc.want == NotJudged && (r.Generator.TimeoutsDuringStalls != 1 || r.Losses[0].GeneratorStallMs < 390) {
			t.Errorf("generator %+v, loss %+v", r.Generator, r.Losses[0])
		}
	}
}

// The delivered-load rule, on a timeline made by hand: one bucket below
// half its share inside the window fails it; outside the window it does
// not count; the rate over the run must be 99 % of the target.
func TestDeliveryRule(t *testing.T) {
	start := time.Unix(1000, 0)
	mk := func(sent []int, rate float64) *Report {
		r := &Report{Started: start, RateTarget: 1000, RateAchieved: rate, Total: 1}
		for i, n := range sent {
			r.Timeline = append(r.Timeline, Bucket{OffsetMs: int64(i) * 100, Sent: n})
		}
		r.LastSent = start.Add(time.Duration(len(sent)) * BucketWidth)
		return r
	}
	full := []int{100, 100, 100, 100, 100, 100}
	gap := []int{100, 100, 49, 151, 100, 100}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		r        *Report
		from, to time.Time
		want     bool
	}{
		{"full", mk(full, 1000), time.Time{}, time.Time{}, true},
		{"slow overall", mk(full, 985), time.Time{}, time.Time{}, false},
		{"gap in window", mk(gap, 1000), time.Time{}, time.Time{}, false},
		{"gap before window", mk(gap, 1000), at(300), time.Time{}, true},
		{"gap after window", mk(gap, 1000), time.Time{}, at(200), true},
		{"window starts mid-bucket", mk(gap, 1000), at(250), time.Time{}, true},
	} {
		d := tc.r.delivery(tc.from, tc.to, nil)
		if d.Delivered != tc.want {
			t.Errorf("%s: delivered %v, want %v (%+v)", tc.name, d.Delivered, tc.want, d)
		}
	}
}

// Long-lived load sends less while the server sits on every connection:
// that window is held, not undelivered, unless the generator itself stood
// still then or the connections were idle for most of it.
func TestDeliveryHeldByServer(t *testing.T) {
	start := time.Unix(1000, 0)
	// 10 connections at 500/s: 50 per bucket, 1,000 ms of connection
	// time per bucket; the third sent 18.
	mk := func(connections int, heldMs float64, stalls ...Stall) *Report {
		r := &Report{Started: start, RateTarget: 500, RateAchieved: 500, Total: 1, Connections: connections, Generator: Generator{Stalls: stalls}}
		for i, n := range []int{50, 50, 18, 82, 50} {
			r.Timeline = append(r.Timeline, Bucket{OffsetMs: int64(i) * 100, Sent: n, HeldMs: 20})
		}
		r.Timeline[2].HeldMs = heldMs
		r.LastSent = start.Add(500 * time.Millisecond)
		return r
	}
	for _, tc := range []struct {
		name      string
		r         *Report
		delivered bool
		held      int
	}{
		{"every connection held", mk(10, 800), true, 1},
		{"connections idle", mk(10, 300), false, 0},
		{"held while the generator stood still", mk(10, 800, Stall{At: start.Add(230 * time.Millisecond), Ms: 40}), false, 0},
		{"a stall outside the window does not matter", mk(10, 800, Stall{At: start.Add(20 * time.Millisecond), Ms: 40}), true, 1},
		{"fresh connections are never held", mk(0, 800), false, 0},
	} {
		d := tc.r.delivery(time.Time{}, time.Time{}, nil)
		if d.Delivered != tc.delivered || d.HeldCount != tc.held || d.GapCount != 1-tc.held {
			t.Errorf("%s: %+v; want delivered %v, %d held", tc.name, d, tc.delivered, tc.held)
		}
		if tc.held > 0 && (d.Held[0].OffsetMs != 200 || d.Held[0].HeldShare != 0.8 || !strings.Contains(d.String(), "the server held the connections in 1 windows of 100ms, first at +0.2s: 18 sent of 50, 80% of the connection time")) {
			t.Errorf("%s: held %+v, %q", tc.name, d.Held, d)
		}
	}
}

// A request's wait on the server is spread over the buckets it spans,
// for long-lived load only.
func TestHeldTimeFillsBuckets(t *testing.T) {
	start := time.Unix(1000, 0)
	acc := newAccumulator(Config{Targets: []string{"http://x"}, Rate: 10, Connections: 1, Timeout: time.Second}, start)
	acc.add(outcome{seq: 0, at: start.Add(50 * time.Millisecond), latency: 200 * time.Millisecond})
	acc.add(outcome{seq: 1, at: start.Add(250 * time.Millisecond), latency: 10 * time.Millisecond})
	var got []float64
	for _, b := range acc.r.Timeline {
		got = append(got, b.HeldMs)
	}
	if want := []float64{50, 100, 60}; !slices.Equal(got, want) {
		t.Errorf("held ms per bucket %v, want %v", got, want)
	}
}

// An RPC connection that breaks while idle, just as a call is about to be
// registered on it, must not take the call down with it: the check and the
// registration are one step, so the call goes out on a new connection.
func TestRPCBreakBeforeRegisterIsAReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				br := bufio.NewReader(c)
				for {
					f, err := rpcwire.Read(br)
					if err != nil {
						return
					}
					rpcwire.Write(c, rpcwire.Frame{ID: f.ID, Kind: rpcwire.KindResponse, Payload: []byte("p v")})
				}
			}()
		}
	}()
	cfg, err := Config{Targets: []string{"rpc://" + ln.Addr().String()}, Connections: 1, InFlight: 1, Rate: 50, Duration: time.Second, Timeout: 500 * time.Millisecond}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	hook := func(c wireConn) {
		rc := c.(*rpcConn)
		if calls.Add(1) != 10 {
			return
		}
		// The server closes the first connection; wait until the
		// client's reader has seen it.
		(<-conns).Close()
		for {
			rc.mu.Lock()
			broken := rc.broken
			rc.mu.Unlock()
			if broken {
				return
			}
			runtime.Gosched()
		}
	}
	started := time.Now()
	out, counts := sendLongLivedWith(context.Background(), cfg, started, cfg.Duration, hook)
	acc := newAccumulator(cfg, started)
	for o := range out {
		acc.add(o)
	}
	counts.fill(acc.r)
	r := acc.report(Generator{})
	if r.Lost != 0 || r.Reconnects != 1 || r.BrokenConnections != 0 || r.Total < 45 {
		t.Fatalf("%s, reconnects %d, broken %d; want nothing lost, one reconnect", r.Summary(), r.Reconnects, r.BrokenConnections)
	}
}

// A generator that stands still and then catches up in a burst fills every
// bucket, but the server went without requests while it stood still: a
// stall of half a bucket or more in the window is load not delivered.
func TestDeliveryGeneratorStall(t *testing.T) {
	start := time.Unix(1000, 0)
	mk := func(stalls ...Stall) *Report {
		r := &Report{Started: start, RateTarget: 1000, RateAchieved: 1000, Total: 1, Generator: Generator{Stalls: stalls}}
		for i := range 6 {
			r.Timeline = append(r.Timeline, Bucket{OffsetMs: int64(i) * 100, Sent: 100})
		}
		r.LastSent = start.Add(600 * time.Millisecond)
		return lateThrough(r)
	}
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name     string
		r        *Report
		from     time.Time
		want     bool
		stalls   int
		contains string
	}{
		{"no stall", mk(), time.Time{}, true, 0, ""},
		{"a short stall", mk(Stall{At: at(200), Ms: 40}), time.Time{}, true, 0, ""},
		{"standing still 96 of 100 ms", mk(Stall{At: at(200), Ms: 96}, Stall{At: at(300), Ms: 96}), time.Time{}, false, 2,
			"the load generator stood still 2 times for 50ms or more (first at +0.2s, longest 96ms)"},
		{"before the window", mk(Stall{At: at(100), Ms: 96}), at(300), true, 0, ""},
	} {
		d := tc.r.delivery(tc.from, time.Time{}, nil)
		if d.Delivered != tc.want || d.Stalls != tc.stalls || !strings.Contains(d.String(), tc.contains) {
			t.Errorf("%s: %+v, %q; want delivered %v, %d stalls", tc.name, d, d, tc.want, tc.stalls)
		}
	}
}

// lateThrough marks the requests due during each stall as sent late by
// the stall's length, as a generator that really stood still sends them.
func lateThrough(r *Report) *Report {
	for _, st := range r.Generator.Stalls {
		for i := range r.Timeline {
			lo := r.Started.Add(time.Duration(i) * BucketWidth)
			if lo.Before(st.At.Add(ms2d(st.Ms))) && st.At.Before(lo.Add(BucketWidth)) {
				r.Timeline[i].LateMs = max(r.Timeline[i].LateMs, st.Ms)
			}
		}
	}
	return r
}

// witnessStill is a witness that stood still over the spans given.
type witnessStill [][2]time.Time

func (w witnessStill) StoodStill(from, to time.Time) time.Duration {
	var d time.Duration
	for _, s := range w {
		lo, hi := maxTime(s[0], from), minTime(s[1], to)
		if hi.After(lo) {
			d += hi.Sub(lo)
		}
	}
	return d
}

// A stall the witness shared (at least half of it) is the machine's; one
// it did not is the generator's own; without a witness, neither is said.
func TestStallsSayWhoseTheyWere(t *testing.T) {
	start := time.Unix(1000, 0)
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	close(w.done)
	w.add(Stall{At: start, Ms: 80})
	w.add(Stall{At: start.Add(time.Second), Ms: 100})
	w.add(Stall{At: start.Add(2 * time.Second), Ms: 60})
	wit := witnessStill{
		{start.Add(-10 * time.Millisecond), start.Add(70 * time.Millisecond)},                         // 70 of 80 ms
		{start.Add(time.Second + 90*time.Millisecond), start.Add(time.Second + 200*time.Millisecond)}, // 10 of 100 ms
	}
	g := w.finish(wit)
	want := []StallKind{StallMachine, StallOwn, StallOwn}
	for i, s := range g.Stalls {
		if s.Whose != want[i] {
			t.Errorf("stall %d (%+v): %s, want %s", i, s, s.Whose, want[i])
		}
	}
	if g.MachineStalls != 1 || g.OwnStalls != 2 {
		t.Errorf("machine %d, own %d; want 1 and 2", g.MachineStalls, g.OwnStalls)
	}
	w2 := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	close(w2.done)
	w2.add(Stall{At: start, Ms: 80})
	if g := w2.finish(nil); g.Stalls[0].Whose != "" || g.OwnStalls+g.MachineStalls != 0 {
		t.Errorf("no witness: %+v", g)
	}
}

// Judged across critical spans: a stall of the generator's own, or a gap,
// voids the verdict only where it meets a critical span; one the whole
// machine shared never does; a loss is never hidden by either; and a
// lossless verdict still needs every critical span delivered.
func TestJudgeAcrossCriticalSpans(t *testing.T) {
	start := time.Unix(1000, 0)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	mk := func(sent []int, lost int, stalls ...Stall) *Report {
		r := &Report{Started: start, RateTarget: 1000, RateAchieved: 1000, Total: 1000, Lost: lost, Generator: Generator{Stalls: stalls}}
		for i, n := range sent {
			r.Timeline = append(r.Timeline, Bucket{OffsetMs: int64(i) * 100, Sent: n})
		}
		r.LastSent = start.Add(time.Duration(len(sent)) * BucketWidth)
		return lateThrough(r)
	}
	full := []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}
	gapAt7 := []int{100, 100, 100, 100, 100, 100, 100, 20, 180, 100}
	own := func(ms int) Stall { return Stall{At: at(ms), Ms: 80, Whose: StallOwn} }
	machine := func(ms int) Stall { return Stall{At: at(ms), Ms: 80, Whose: StallMachine} }
	early := []Span{{at(100), at(400)}} // the moments the mechanism names
	for _, tc := range []struct {
		name     string
		r        *Report
		critical []Span
		want     Verdict
		outside  int
		machine  int
	}{
		{"own stall inside a critical span", mk(full, 0, own(200)), early, NotJudged, 0, 0},
		{"own stall outside every critical span", mk(full, 0, own(700)), early, Lossless, 1, 0},
		{"own stall, no spans: the whole window is critical", mk(full, 0, own(700)), nil, NotJudged, 0, 0},
		{"a stall with no witness counts as the generator's own", mk(full, 0, Stall{At: at(200), Ms: 80}), early, NotJudged, 0, 0},
		{"machine stall inside a critical span", mk(full, 0, machine(200)), early, Lossless, 0, 1},
		{"gap outside every critical span", mk(gapAt7, 0), early, Lossless, 0, 0},
		{"gap inside a critical span", mk(gapAt7, 0), []Span{{at(650), at(750)}}, NotJudged, 0, 0},
		{"a loss inside an own stall is still a loss", mk(full, 3, own(200)), early, Lossy, 0, 0},
	} {
		j := tc.r.JudgeAcross(time.Time{}, time.Time{}, tc.critical)
		if j.Verdict != tc.want || j.Delivery.OutsideStalls != tc.outside || j.Delivery.MachineStalls != tc.machine {
			t.Errorf("%s: %s (%v), delivery %+v; want %s, %d stalls outside, %d of the machine's", tc.name, j.Verdict, j.Reasons, j.Delivery, tc.want, tc.outside, tc.machine)
		}
	}
	// A stall of the watch through which every request left on time (its
	// clock stood still, the load did not) voids nothing.
	r := mk(full, 0, own(200))
	for i := range r.Timeline {
		r.Timeline[i].LateMs = 3
	}
	if j := r.JudgeAcross(time.Time{}, time.Time{}, early); j.Verdict != Lossless || j.Delivery.SentThrough != 1 {
		t.Errorf("a stall the load was sent through: %s (%v), %+v", j.Verdict, j.Reasons, j.Delivery)
	}
	// Coverage says how much of the window the generator served.
	d := mk(gapAt7, 0, own(200)).delivery(time.Time{}, time.Time{}, early)
	if d.Coverage < 0.80 || d.Coverage > 0.85 {
		t.Errorf("coverage %.3f with an 80ms stall and a 100ms gap in 1s; want about 0.82", d.Coverage)
	}
}

// A request's lateness is kept in the bucket it was due in, not the one
// it left in.
func TestLatenessIsKeptWhereTheRequestWasDue(t *testing.T) {
	cfg, _ := Config{Targets: []string{"http://127.0.0.1:1/"}, Rate: 10, Duration: time.Second}.Normalize()
	start := time.Now()
	acc := newAccumulator(cfg, start)
	acc.add(outcome{seq: 0, at: start.Add(50 * time.Millisecond), latency: time.Millisecond})
	acc.add(outcome{seq: 1, at: start.Add(730 * time.Millisecond), sendLag: 90 * time.Millisecond, latency: time.Millisecond})
	r := acc.report(Generator{})
	if r.Timeline[6].LateMs != 90 || r.Timeline[7].LateMs != 0 {
		t.Errorf("due at +640ms, sent at +730ms: late %v in its due bucket, %v where it left", r.Timeline[6].LateMs, r.Timeline[7].LateMs)
	}
}

// PressureAt reads the second that holds t; outside the run it is unknown.
func TestPressureAt(t *testing.T) {
	start := time.Unix(1000, 0)
	g := Generator{PressureBySecond: []float64{0.1, 0.7}}
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{{0, 0.1}, {1500 * time.Millisecond, 0.7}, {2 * time.Second, -1}, {-time.Second, -1}} {
		if got := g.PressureAt(start, start.Add(tc.at)); got != tc.want {
			t.Errorf("PressureAt(+%s) = %v, want %v", tc.at, got, tc.want)
		}
	}
}

// A request lost on a reused connection names the pod that answered the
// request before it on that connection; connections are told apart by
// their generator too.
func TestALossNamesThePodItsConnectionReached(t *testing.T) {
	start := time.Unix(1000, 0)
	acc := newAccumulator(Config{Targets: []string{"http://x"}, Rate: 10, Timeout: time.Second}, start)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	acc.add(outcome{seq: 0, at: at(0), latency: time.Millisecond, localPort: 40000, pod: "web-a", generator: "g1"})
	acc.add(outcome{seq: 1, at: at(1), latency: time.Millisecond, localPort: 40000, pod: "web-b", generator: "g2"})
	acc.add(outcome{seq: 2, at: at(100), latency: time.Millisecond, localPort: 40000, reused: true, class: EOF, generator: "g1"})
	acc.add(outcome{seq: 3, at: at(101), latency: time.Millisecond, localPort: 40000, reused: true, class: Reset, generator: "g2"})
	acc.add(outcome{seq: 4, at: at(102), latency: time.Millisecond, localPort: 40001, reused: true, class: EOF, generator: "g1"})
	acc.add(outcome{seq: 5, at: at(103), latency: time.Millisecond, localPort: 40000, class: Refused, generator: "g1"})
	var got []string
	for _, l := range acc.r.Losses {
		got = append(got, l.ConnPod)
	}
	if want := []string{"web-a", "web-b", "", ""}; !slices.Equal(got, want) {
		t.Errorf("the pods of the losses' connections %q, want %q (unknown for a connection no answer named, and for a new one)", got, want)
	}
}

// A gRPC client balancing over several pods keeps an HTTP/2 connection
// to each: a loss on one names the pod of that connection, not the pod
// that answered last on another of the same client.
func TestALossNamesThePodOfItsHTTP2Connection(t *testing.T) {
	start := time.Unix(1000, 0)
	acc := newAccumulator(Config{Targets: []string{"grpc://x"}, Connections: 1, Rate: 10, Timeout: time.Second}, start)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	acc.add(outcome{seq: 0, at: at(0), latency: time.Millisecond, conn: 1, h2conn: 1, pod: "web-a"})
	acc.add(outcome{seq: 1, at: at(1), latency: time.Millisecond, conn: 1, h2conn: 2, pod: "web-b"})
	acc.add(outcome{seq: 2, at: at(100), latency: time.Millisecond, conn: 1, h2conn: 1, reused: true, class: EOF})
	acc.add(outcome{seq: 3, at: at(101), latency: time.Millisecond, conn: 1, h2conn: 2, reused: true, class: Reset})
	var got []string
	for _, l := range acc.r.Losses {
		got = append(got, l.ConnPod)
	}
	if want := []string{"web-a", "web-b"}; !slices.Equal(got, want) {
		t.Errorf("the pods of the losses' connections %q, want %q", got, want)
	}
}

// EndByPod counts who answered the requests sent in the load's last
// EndWindow, whatever order their outcomes came in; its memory holds
// only those buckets.
func TestEndByPodIsWhoAnsweredAtTheEnd(t *testing.T) {
	cfg, err := Config{Targets: []string{"http://127.0.0.1:1/"}, Rate: 100, Duration: 10 * time.Second}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	acc := newAccumulator(cfg, start)
	// 10 s at 100/s: old-a and old-b until 5 s, then new-a; in the last
	// 2 s, new-a and new-b take turns. One slow answer from old-b, sent
	// at 4 s, comes in last.
	for i := range 1000 {
		at := time.Duration(i) * 10 * time.Millisecond
		pod := []string{"old-a", "old-b"}[i%2]
		switch {
		case at >= 8*time.Second:
			pod = []string{"new-a", "new-b"}[i%2]
		case at >= 5*time.Second:
			pod = "new-a"
		}
		acc.add(outcome{seq: uint64(i), at: start.Add(at), latency: time.Millisecond, pod: pod})
		if len(acc.endPods) > endBuckets+1 {
			t.Fatalf("%d buckets held, want at most %d", len(acc.endPods), endBuckets+1)
		}
	}
	acc.add(outcome{seq: 1000, at: start.Add(4 * time.Second), latency: 6 * time.Second, pod: "old-b"})
	r := acc.report(Generator{})
	if want := map[string]int{"new-a": 100, "new-b": 100}; !maps.Equal(r.EndByPod, want) {
		t.Errorf("end by pod %v, want %v", r.EndByPod, want)
	}
	if r.ByPod["old-b"] != 251 || r.ByPod["new-a"] != 400 {
		t.Errorf("by pod %v", r.ByPod)
	}
}

// The text report lists the 100 ms buckets that lost requests; a run of
// buckets that lost every request is one line with its span, partial
// ones one line each.
func TestLossBucketsFoldAnOutage(t *testing.T) {
	b := func(ms int64, sent, lost int) Bucket {
		return Bucket{OffsetMs: ms, Sent: sent, OK: sent - lost, Lost: lost, LostByClass: map[Class]int{Refused: lost}}
	}
	r := &Report{Lost: 1, Timeline: []Bucket{
		b(0, 10, 0), b(100, 10, 3), b(200, 10, 10), b(300, 10, 10), b(400, 10, 10),
		b(500, 10, 2), b(600, 10, 10), b(800, 10, 10), b(900, 10, 0),
	}}
	var out strings.Builder
	r.writeLossBuckets(&out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")[1:]
	want := []string{
		"+0.100s  sent 10    lost 3     refused 3",
		"+0.200s to +0.500s sent 30    lost 30    refused 30 (every request, 3 buckets)",
		"+0.500s  sent 10    lost 2     refused 2",
		"+0.600s  sent 10    lost 10    refused 10",
		"+0.800s  sent 10    lost 10    refused 10",
	}
	if len(lines) != len(want) {
		t.Fatalf("got\n%s", out.String())
	}
	for i := range want {
		if got := strings.Join(strings.Fields(lines[i]), " "); got != strings.Join(strings.Fields(want[i]), " ") {
			t.Errorf("line %d = %q, want %q", i, got, want[i])
		}
	}
}

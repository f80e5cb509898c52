package loadgen

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// A report's memory is fixed, not a sample per request: two hours at
// 5,000 requests/s (36 million outcomes) fit in the same few MiB as one
// minute does. The bound stated in README comes from here.
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
		w.observe(start.Add(700*time.Millisecond), tc.stall)
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
		d := tc.r.delivery(tc.from, tc.to)
		if d.Delivered != tc.want {
			t.Errorf("%s: delivered %v, want %v (%+v)", tc.name, d.Delivered, tc.want, d)
		}
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
	hook := func(rc *rpcConn) {
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
	out, counters := sendLongLivedWith(context.Background(), cfg, started, cfg.Duration, hook)
	acc := newAccumulator(cfg, started)
	for o := range out {
		acc.add(o)
	}
	acc.r.Reconnects, acc.r.BrokenConnections = counters()
	r := acc.report(Generator{})
	if r.Lost != 0 || r.Reconnects != 1 || r.BrokenConnections != 0 || r.Total < 45 {
		t.Fatalf("%s, reconnects %d, broken %d; want nothing lost, one reconnect", r.Summary(), r.Reconnects, r.BrokenConnections)
	}
}

package loadgen_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

func run(t *testing.T, cfg loadgen.Config) *loadgen.Report {
	t.Helper()
	r, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// judgedRun runs the load cfg(s) against a server s made afresh for each
// attempt (mk), and again while a run ends not judged, three times at
// most, as nodrop's own runs are (scenario.RunUntilJudged): a run not
// judged measured nothing, so running it again hides no loss, and each
// attempt's server counts its own requests only. Beside a kind cluster
// or a build, the generator now and then stands still long enough for a
// run to be not judged.
func judgedRun[S any](t *testing.T, mk func() S, cfg func(S) loadgen.Config) (*loadgen.Report, S) {
	t.Helper()
	const attempts = 3
	for i := 1; ; i++ {
		s := mk()
		r := run(t, cfg(s))
		if r.Verdict != loadgen.NotJudged || i == attempts {
			return r, s
		}
		t.Logf("attempt %d of %d not judged (%s): running it again", i, attempts, strings.Join(r.NotJudged, "; "))
		time.Sleep(time.Second)
	}
}

// expectOnly asserts the report lost exactly want requests, all of class c.
func expectOnly(t *testing.T, r *loadgen.Report, c loadgen.Class, want int) {
	t.Helper()
	for _, k := range loadgen.LossClasses {
		n, exp := r.LostByClass[k], 0
		if k == c {
			exp = want
		}
		if n != exp {
			t.Errorf("lost_by_class[%s] = %d, want %d (%s)", k, n, exp, r.Summary())
		}
	}
	if r.Lost != want || r.OK+r.Lost != r.Total {
		t.Errorf("lost = %d, ok = %d, total = %d; want lost %d", r.Lost, r.OK, r.Total, want)
	}
}

// expectExact asserts that the client sent exactly the requests the server
// saw (nothing retried, nothing invented), that about a tenth of them were
// dropped, and that every drop, and nothing else, was lost as class c.
func expectExact(t *testing.T, r *loadgen.Report, srv *rawServer, c loadgen.Class) {
	t.Helper()
	seen, dropped := int(srv.n.Load()), int(srv.dropped.Load())
	if r.Total != seen {
		t.Fatalf("client sent %d, server saw %d", r.Total, seen)
	}
	if r.Total < 990 || dropped != seen/10 {
		t.Fatalf("server saw %d requests and dropped %d; want about 1000 and a tenth", seen, dropped)
	}
	expectOnly(t, r, c, dropped)
}

// Each misbehaviour, at 1000 requests with the default GET and keep-alive,
// must be counted exactly, in its own class.
func TestEveryMisbehaviourIsCountedExactly(t *testing.T) {
	cases := []struct {
		name  string
		act   action
		class loadgen.Class
		// idleRace: the loss is on a reused connection before any
		// response byte, which the report names separately.
		idleRace bool
	}{
		{"503", respond503, loadgen.HTTP5xx, false},
		{"RST after reading the request", resetConn, loadgen.Reset, true},
		{"FIN without a response", closeConn, loadgen.EOF, true},
		{"body cut short", partialBody, loadgen.EOF, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, srv := judgedRun(t, func() *rawServer { return startRawServer(t, every(10, tc.act)) }, func(srv *rawServer) loadgen.Config {
				return loadgen.Config{Targets: []string{srv.URL()}, Rate: 1000, Duration: time.Second}
			})
			expectExact(t, r, srv, tc.class)
			// A drop on a kept-alive connection before any response byte,
			// failing within RaceWindow of its write, is the idle-close race;
			// one on a connection's first request is not. (On a busy machine
			// the client can see the server's close later than RaceWindow:
			// such a loss is not called a race, by the rule's design.)
			onReused := 0
			for _, l := range r.Losses {
				if l.ConnReused && !l.GotResponseByte && l.FailedAfterMs <= float64(loadgen.RaceWindow.Milliseconds()) {
					onReused++
				}
			}
			if want := map[bool]int{true: onReused, false: 0}[tc.idleRace]; r.IdleCloseRace != want || (tc.idleRace && want == 0) {
				t.Errorf("idle_close_race = %d, want %d (losses on reused connections before a response byte, within %s)", r.IdleCloseRace, want, loadgen.RaceWindow)
			}
			if r.Retried != 0 {
				t.Errorf("retried = %d in strict mode", r.Retried)
			}
			for _, l := range r.Losses {
				if l.Class != tc.class {
					t.Fatalf("loss %+v has class %s", l, l.Class)
				}
			}
		})
	}
}

func TestStallPastTimeoutIsTimeout(t *testing.T) {
	srv := startRawServer(t, every(10, stall))
	r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 200, Duration: time.Second, Timeout: 500 * time.Millisecond})
	if r.Total != int(srv.n.Load()) || r.Total < 195 {
		t.Fatalf("client sent %d, server saw %d; want about 200 each", r.Total, srv.n.Load())
	}
	expectOnly(t, r, loadgen.Timeout, int(srv.dropped.Load()))
}

// The timeline keeps the slowest answer of each bucket: the server that
// answers every 25th request after 1.5 s shows it in the buckets those
// were sent in, and nowhere else.
func TestTimelineKeepsTheSlowestAnswer(t *testing.T) {
	srv := startRawServer(t, every(25, stall))
	r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 100, Duration: time.Second, Timeout: 2 * time.Second})
	if r.Lost != 0 || r.OK < 95 {
		t.Fatalf("lost %d, answered %d: %s", r.Lost, r.OK, r.Summary())
	}
	slow := 0
	for _, b := range r.Timeline {
		if b.SlowestMs >= float64(stallFor.Milliseconds()) {
			slow++
		}
	}
	if want := int(srv.n.Load() / 25); slow < want-1 || slow > want {
		t.Errorf("%d buckets with an answer of %s or more, want %d", slow, stallFor, want)
	}
	if got := r.SlowestAnswered(r.Started, r.Started.Add(time.Second)); got < stallFor || got > stallFor+500*time.Millisecond {
		t.Errorf("slowest answer %s, want about %s", got, stallFor)
	}
}

func TestClosedPortIsRefused(t *testing.T) {
	r := run(t, loadgen.Config{Targets: []string{closedPortURL(t)}, Rate: 200, Duration: time.Second})
	if r.Total < 195 {
		t.Fatalf("sent %d, want about 200", r.Total)
	}
	expectOnly(t, r, loadgen.Refused, r.Total)
	if r.LongestOutage == nil || r.LongestOutage.Requests != r.Total {
		t.Errorf("longest outage = %+v, want all %d requests", r.LongestOutage, r.Total)
	}
}

func TestFreshConnectionsMode(t *testing.T) {
	srv := startRawServer(t, every(10, resetConn))
	r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 500, Duration: time.Second, DisableKeepAlive: true})
	if r.Total != int(srv.n.Load()) || r.Total < 495 {
		t.Fatalf("client sent %d, server saw %d; want about 500 each", r.Total, srv.n.Load())
	}
	expectOnly(t, r, loadgen.Reset, int(srv.dropped.Load()))
	if r.IdleCloseRace != 0 {
		t.Errorf("idle_close_race = %d on fresh connections, want 0", r.IdleCloseRace)
	}
	for _, l := range r.Losses {
		if l.ConnReused {
			t.Fatalf("loss %+v on a reused connection with keep-alive off", l)
		}
	}
}

// Go's Transport re-sends a GET that failed on a reused connection. Strict
// mode must count each such request; lenient mode shows what a retrying
// client sees and says how many it re-sent.
func TestStrictCountsWhatNetHTTPWouldRetry(t *testing.T) {
	for _, act := range []action{resetConn, closeConn} {
		srv := startRawServer(t, every(10, act))
		strict := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 1000, Duration: time.Second})
		expectExact(t, strict, srv, map[action]loadgen.Class{resetConn: loadgen.Reset, closeConn: loadgen.EOF}[act])

		srv = startRawServer(t, every(10, act))
		lenient := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 1000, Duration: time.Second, Lenient: true})
		dropped := int(srv.dropped.Load())
		if lenient.Retried == 0 || lenient.Lost+lenient.Retried != dropped {
			t.Errorf("lenient: lost %d + retried %d, server dropped %d; want a sum equal to the drops with retries > 0",
				lenient.Lost, lenient.Retried, dropped)
		}
		if lenient.Lost >= strict.Lost {
			t.Errorf("lenient lost %d, strict lost %d: retries should hide losses from a lenient client", lenient.Lost, strict.Lost)
		}
	}
}

// A healthy server must give exactly 0 lost at 2000 rps for 5 s.
func TestHealthyServerLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("5 s of load")
	}
	r, _ := judgedRun(t, func() *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(loadgen.PodHeader, "healthy")
			w.Write([]byte("ok"))
		}))
		t.Cleanup(srv.Close)
		return srv
	}, func(srv *httptest.Server) loadgen.Config {
		return loadgen.Config{Targets: []string{srv.URL}, Rate: 2000, Duration: 5 * time.Second}
	})
	if !r.Lossless() {
		t.Fatalf("healthy server: %s", r.Summary())
	}
	if r.Total < 9900 || r.Total > 10000 {
		t.Errorf("total = %d, want about 10000", r.Total)
	}
	if r.ByPod["healthy"] != r.Total {
		t.Errorf("by_pod = %v, want all %d from healthy", r.ByPod, r.Total)
	}
	if len(r.Timeline) < 50 || r.RateAchieved < 1900 {
		t.Errorf("timeline has %d buckets, rate %.0f/s", len(r.Timeline), r.RateAchieved)
	}
	// What the machine did meanwhile is in the report: nodrop's own CPU,
	// and, where the kernel says it, the CPU pressure of each second.
	g := r.Generator
	if g.CPU <= 0 || g.CPU > 2 {
		t.Errorf("nodrop's CPU over the run: %v CPUs", g.CPU)
	}
	if _, err := os.Stat("/proc/pressure/cpu"); err == nil && (len(g.PressureBySecond) < 4 || g.CPUPressure < 0 || g.CPUPressure > 1) {
		t.Errorf("CPU pressure %v over the run, %v by second", g.CPUPressure, g.PressureBySecond)
	}
	// And what used the CPU: the generator, at 2,000 rps, among the rest.
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		self := filepath.Base(os.Args[0])
		found := false
		for _, u := range g.Busiest {
			found = found || len(self) >= 15 && strings.HasPrefix(self, u.Name) || u.Name == self
		}
		if !found {
			t.Errorf("the busiest over the run (%v) leave out the generator itself (%s)", g.Busiest, self)
		}
	}
}

func TestCancelStopsSendingAndJudgesInFlight(t *testing.T) {
	srv := startRawServer(t, func(int64) action { return respond200 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{srv.URL()}, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Lossless() || r.Total < 100 || r.Total > 200 {
		t.Fatalf("after 300 ms at 500/s: %s", r.Summary())
	}
}

func TestReportJSONHasEveryClass(t *testing.T) {
	srv := startRawServer(t, every(4, respond503))
	r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 100, Duration: 500 * time.Millisecond})
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Total, OK, Lost int
		LostByClass     map[string]int   `json:"lost_by_class"`
		RateAchieved    *float64         `json:"rate_achieved"`
		Latency         map[string]any   `json:"latency"`
		Timeline        []map[string]any `json:"timeline"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, c := range loadgen.LossClasses {
		if _, ok := m.LostByClass[string(c)]; !ok {
			t.Errorf("lost_by_class lacks %q: %s", c, raw)
		}
	}
	if m.Total != int(srv.n.Load()) || m.Lost != int(srv.dropped.Load()) || m.Lost == 0 || m.LostByClass["http_5xx"] != m.Lost || m.RateAchieved == nil || len(m.Latency) == 0 || len(m.Timeline) == 0 {
		t.Errorf("unexpected JSON: %s", raw)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"http_5xx", "longest outage", "losses by 100 ms bucket"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestBadConfig(t *testing.T) {
	for name, cfg := range map[string]loadgen.Config{
		"no target":        {},
		"not a URL":        {Targets: []string{"://x"}},
		"bad scheme":       {Targets: []string{"ftp://127.0.0.1/"}},
		"no host":          {Targets: []string{"http:///x"}},
		"negative rate":    {Targets: []string{"http://127.0.0.1/"}, Rate: -1},
		"negative timeout": {Targets: []string{"http://127.0.0.1/"}, Timeout: -time.Second},
		"negative dur":     {Targets: []string{"http://127.0.0.1/"}, Duration: -time.Second},
		"too long":         {Targets: []string{"http://127.0.0.1/"}, Duration: 3 * time.Hour},
		"port too big":     {Targets: []string{"http://127.0.0.1:99999/"}},
		"port zero":        {Targets: []string{"http://127.0.0.1:0/"}},
		"bad method":       {Targets: []string{"http://127.0.0.1/"}, Method: "BAD METHOD"},
	} {
		if _, err := loadgen.Run(context.Background(), cfg); !errors.Is(err, loadgen.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// A server killed while it worked on requests cuts them: reset or EOF,
// on reused connections, before any response byte. That is not the
// idle-close race, which fails within RaceWindow of the write.
func TestKilledServerIsNotAnIdleCloseRace(t *testing.T) {
	for _, act := range []action{holdReset, holdClose} {
		srv := startRawServer(t, every(10, act))
		r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 500, Duration: time.Second})
		if r.Lost == 0 || r.Lost != int(srv.dropped.Load()) {
			t.Fatalf("lost %d, server cut %d: %s", r.Lost, srv.dropped.Load(), r.Summary())
		}
		reused := 0
		for _, l := range r.Losses {
			if l.ConnReused && !l.GotResponseByte {
				reused++
			}
			if l.FailedAfterMs < float64(holdFor.Milliseconds()) {
				t.Errorf("loss %+v failed after %.1fms, before the server's %s of work", l, l.FailedAfterMs, holdFor)
			}
		}
		if reused == 0 || r.IdleCloseRace != 0 {
			t.Errorf("%d losses on reused connections before any byte, %d called idle-close races; want > 0 and 0", reused, r.IdleCloseRace)
		}
	}
}

// A run is judged only if its load was delivered: the rate asked for, and
// no stretch of the run far below it.
func TestUndeliveredRateIsNotJudged(t *testing.T) {
	// Two workers and 20 ms per request can send 100/s, whatever the
	// machine: a tenth of the rate asked. (Asking for more than the
	// machine can send is no test: an idle 2-core machine once sent
	// 29,936 of 30,000/s.)
	srv := startCountingHTTPServer(t, func(w http.ResponseWriter, _ int64) {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	r := run(t, loadgen.Config{Targets: []string{srv.url}, Rate: 1000, Duration: time.Second, MaxWorkers: 2})
	if r.Verdict != loadgen.NotJudged || r.Lossless() || r.Delivery.Delivered || r.RateAchieved > 200 {
		t.Fatalf("verdict %q, delivery %+v at %.0f of 1000/s", r.Verdict, r.Delivery, r.RateAchieved)
	}
	if len(r.NotJudged) == 0 || !strings.Contains(r.NotJudged[0], "load not delivered") {
		t.Errorf("reasons %q; want load not delivered", r.NotJudged)
	}
}

// Long-lived load cannot send while the server sits on its requests: the
// stretch sends less than its share, but the client did all it could (its
// one connection waited on the server), so the run is judged, and the
// hold is named and shows as latency.
func TestServerHoldIsJudged(t *testing.T) {
	r, _ := judgedRun(t, func() *countingHTTPServer {
		var stalled atomic.Bool
		return startCountingHTTPServer(t, func(w http.ResponseWriter, n int64) {
			if n == 300 && stalled.CompareAndSwap(false, true) {
				time.Sleep(700 * time.Millisecond)
			}
			w.Write([]byte("ok"))
		})
	}, func(srv *countingHTTPServer) loadgen.Config {
		return loadgen.Config{Targets: []string{srv.url}, Connections: 1, Rate: 200, Duration: 3 * time.Second}
	})
	if r.Lost != 0 || r.Verdict != loadgen.Lossless || r.Delivery.GapCount != 0 || r.Delivery.HeldCount < 5 {
		t.Fatalf("%s, verdict %q %v, delivery %+v; want lossless, the hold named", r.Summary(), r.Verdict, r.NotJudged, r.Delivery)
	}
	h := r.Delivery.Held[0]
	if h.OffsetMs < 1000 || h.OffsetMs > 2500 || h.Sent > 10 || h.HeldShare < 0.5 || r.Latency.Max < 700 {
		t.Errorf("first hold %+v, latency %+v; want one about 1.5 s in, 700 ms long", h, r.Latency)
	}
}

func TestInterruptedRunIsNotJudged(t *testing.T) {
	srv := startRawServer(t, func(int64) action { return respond200 })
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{srv.URL()}, Rate: 200, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.Verdict != loadgen.NotJudged || r.Lost != 0 {
		t.Fatalf("interrupted %v, verdict %q: %s", r.Interrupted, r.Verdict, r.Summary())
	}
	if len(r.NotJudged) == 0 || !strings.Contains(r.NotJudged[0], "interrupted after 0.") || !strings.Contains(r.NotJudged[0], "of 5.0s") {
		t.Errorf("reasons %q", r.NotJudged)
	}
}

func TestReportNamesTheClient(t *testing.T) {
	srv := startRawServer(t, func(int64) action { return respond200 })
	r := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 100, Duration: 300 * time.Millisecond, IdleTimeout: 3 * time.Second})
	c := r.Client
	if !c.KeepAlive || !c.OldestFirst || c.IdleTimeoutMs != 3000 || c.TimeoutMs != 2000 || !c.Strict || c.CloseWithRST {
		t.Errorf("client %+v", c)
	}
	if s := c.String(); !strings.Contains(s, "longest-idle connection reused first, idle connections closed after 3s") {
		t.Errorf("client line %q", s)
	}
	if r.Generator.SendLag.P99 > 100 || r.Generator.StallLimitMs != 500 {
		t.Errorf("generator %+v", r.Generator)
	}
}

// A timeout is told apart by where it happened: a connection attempt
// nobody answered (a listener whose accept queue is full drops the SYN,
// as a packet to an address nothing answers is dropped) or a request on
// a connection that got no answer.
func TestUnansweredConnectionAttemptIsNamedApart(t *testing.T) {
	// A listener with an accept queue of one, filled and never accepted.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 2 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	full := run(t, loadgen.Config{Targets: []string{"http://" + addr + "/"}, Rate: 20, Duration: 500 * time.Millisecond, Timeout: 300 * time.Millisecond, DisableKeepAlive: true})
	expectOnly(t, full, loadgen.Timeout, full.Total)
	for _, l := range full.Losses {
		if !l.NoConnection {
			t.Fatalf("a timeout to a listener that drops every SYN had a connection: %+v", l)
		}
	}
	expectPorts(t, full)

	srv := startRawServer(t, every(1, stall))
	held := run(t, loadgen.Config{Targets: []string{srv.URL()}, Rate: 20, Duration: 500 * time.Millisecond, Timeout: 300 * time.Millisecond, DisableKeepAlive: true})
	expectOnly(t, held, loadgen.Timeout, held.Total)
	for _, l := range held.Losses {
		if l.NoConnection {
			t.Fatalf("a timeout on an accepted connection counted as never connected: %+v", l)
		}
	}
	expectPorts(t, held)
}

// expectPorts checks that every loss names the client port it was sent
// from (what the node's conntrack table knows it by), each its own.
func expectPorts(t *testing.T, r *loadgen.Report) {
	t.Helper()
	seen := map[int]bool{}
	for _, l := range r.Losses {
		if l.LocalPort == 0 || seen[l.LocalPort] {
			t.Fatalf("loss without its own client port: %+v", l)
		}
		seen[l.LocalPort] = true
	}
}

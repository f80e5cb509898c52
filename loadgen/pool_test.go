package loadgen_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// connLog records, per client connection, when it last carried a request.
type connLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *connLog) saw(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last[addr] = time.Now()
}

// idleSince lists the connections that carried nothing after t.
func (l *connLog) idleSince(t time.Time) (idle, all int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.last {
		if at.Before(t) {
			idle++
		}
	}
	return idle, len(l.last)
}

// A latency spike grows the kept-alive pool. Afterwards every connection
// must still carry requests, as it would at SIGKILL: Go's own pool reuses
// the newest connection and lets the others idle out, so whether a
// connection to a doomed pod is still in use when it dies would depend on
// how loaded the machine was a second before (issue 13: two parallel runs
// made a negative control lose nothing).
func TestSpikeDoesNotShedKeptAliveConnections(t *testing.T) {
	type spiky struct {
		srv   *httptest.Server
		log   *connLog
		start time.Time
	}
	r, s := judgedRun(t, func() spiky {
		s := spiky{log: &connLog{last: make(map[string]time.Time)}, start: time.Now()}
		s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.log.saw(r.RemoteAddr)
			if time.Since(s.start) < 300*time.Millisecond {
				time.Sleep(40 * time.Millisecond) // the spike: ≈ 20 requests in flight
			}
			w.Write([]byte("ok"))
		}))
		t.Cleanup(s.srv.Close)
		return s
	}, func(s spiky) loadgen.Config {
		return loadgen.Config{Targets: []string{s.srv.URL}, Rate: 500, Duration: 2500 * time.Millisecond}
	})
	if !r.Lossless() {
		t.Fatalf("healthy server: %s", r.Summary())
	}
	log := s.log
	idle, all := log.idleSince(s.start.Add(2 * time.Second))
	if all < 10 {
		t.Fatalf("the spike opened only %d connections; the test needs it to grow the pool", all)
	}
	if idle > 0 {
		t.Errorf("%d of %d kept-alive connections carried nothing in the run's last 0.5 s: shed after the spike", idle, all)
	}
	if r.NewConnections != all {
		t.Errorf("%d connections were opened for %d the server saw: a connection was closed and opened again", r.NewConnections, all)
	}
}

// Once MaxConns connections are busy, a request waits for one of them
// instead of opening another, and still counts against its own timeout.
func TestMaxConnsIsAFixedSet(t *testing.T) {
	log := &connLog{last: make(map[string]time.Time)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.saw(r.RemoteAddr)
		time.Sleep(10 * time.Millisecond)
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	// 500/s of 10 ms requests need 5 connections: the fourth is busy.
	r := run(t, loadgen.Config{Targets: []string{srv.URL}, Rate: 500, Duration: time.Second, MaxConns: 4})
	if !r.Lossless() || r.Total < 490 {
		t.Fatalf("4 connections × 10 ms hold 400/s, the rest waits less than the timeout: %s", r.Summary())
	}
	if _, all := log.idleSince(time.Now()); all != 4 || r.NewConnections != 4 {
		t.Errorf("server saw %d connections, client opened %d; want the fixed 4", all, r.NewConnections)
	}
}

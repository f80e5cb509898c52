package loadgen_test

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/rpcwire"
)

// countingHTTPServer is a loopback HTTP/1.1 server that counts the
// connections it accepted and the responses it wrote.
type countingHTTPServer struct {
	url       string
	conns     atomic.Int64
	responses atomic.Int64
}

func startCountingHTTPServer(t *testing.T, h func(w http.ResponseWriter, n int64)) *countingHTTPServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &countingHTTPServer{url: "http://" + ln.Addr().String() + "/"}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h(w, s.responses.Add(1))
		}),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func longLived(targets string, conns int) loadgen.Config {
	return loadgen.Config{Targets: []string{targets}, Connections: conns, Rate: 1000, Duration: 2 * time.Second, Timeout: time.Second}
}

func TestLongLivedHTTPKeepsItsConnections(t *testing.T) {
	srv := startCountingHTTPServer(t, func(w http.ResponseWriter, _ int64) {
		w.Header().Set(loadgen.PodHeader, "p1")
		w.Write([]byte("ok"))
	})
	r := run(t, longLived(srv.url, 20))
	expectOnly(t, r, loadgen.OK, 0)
	if got := srv.conns.Load(); got != 20 {
		t.Errorf("server accepted %d connections, want exactly the 20 long-lived ones", got)
	}
	if r.Reconnects != 0 || r.BrokenConnections != 0 {
		t.Errorf("reconnects %d, broken %d; want 0 and 0", r.Reconnects, r.BrokenConnections)
	}
	if r.Total < 1500 || r.ByPod["p1"] != r.Total {
		t.Errorf("%d requests, by pod %v; want about 2000, all from p1", r.Total, r.ByPod)
	}
}

// A server that asks a client to leave with Connection: close loses
// nothing: the client opens a new connection, and says so.
func TestLongLivedHTTPConnectionCloseIsAReconnectNotALoss(t *testing.T) {
	srv := startCountingHTTPServer(t, func(w http.ResponseWriter, n int64) {
		if n%50 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.Write([]byte("ok"))
	})
	r := run(t, longLived(srv.url, 10))
	expectOnly(t, r, loadgen.OK, 0)
	closes := int(srv.responses.Load() / 50)
	// A connection closed after the last request is not dialled again.
	if conns := int(srv.conns.Load()); r.Reconnects != closes || conns > 10+closes || conns < closes {
		t.Errorf("reconnects %d, server connections %d; want %d and at most %d", r.Reconnects, conns, closes, 10+closes)
	}
}

// startClosingServer answers HTTP/1.1 on loopback; after every 100th
// request it closes the connection, either right after its response
// (closes while the connection is idle) or after reading the next
// request without answering it (a close that races a request on the
// wire).
func startClosingServer(t *testing.T, afterResponse bool) (url string, answered, closes *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	answered, closes = new(atomic.Int64), new(atomic.Int64)
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				closing := false
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					if closing {
						closes.Add(1)
						return // read, never answered
					}
					c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
					answered.Add(1)
					if n.Add(1)%100 == 0 {
						if afterResponse {
							closes.Add(1)
							return
						}
						closing = true
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/", answered, closes
}

// A close that reaches an idle kept-alive connection before the next
// request is written is no loss: nodrop looks at the socket before each
// request, as a pooled client's read loop does, and reconnects.
func TestLongLivedHTTPCloseSeenWhileIdleIsAReconnect(t *testing.T) {
	url, answered, closes := startClosingServer(t, true)
	r := run(t, longLived(url, 10))
	expectOnly(t, r, loadgen.OK, 0)
	// The last closes may come after the client stopped sending.
	if c := int(closes.Load()); r.Reconnects > c || r.Reconnects < c-10 || c < 10 {
		t.Errorf("reconnects %d after %d closes while idle; want them all seen", r.Reconnects, c)
	}
	if r.BrokenConnections != 0 || r.IdleCloseRace != 0 || r.OK != int(answered.Load()) {
		t.Errorf("broken %d, races %d, ok %d of %d answered", r.BrokenConnections, r.IdleCloseRace, r.OK, answered.Load())
	}
}

// A close that lands while a request is on the wire loses that request:
// an EOF before any response byte, the idle-close race.
func TestLongLivedHTTPCloseRacingARequestIsLost(t *testing.T) {
	url, answered, closes := startClosingServer(t, false)
	r := run(t, longLived(url, 10))
	if r.Lost == 0 || r.Lost != int(closes.Load()) {
		t.Fatalf("lost %d, server closed %d connections under a request (%s)", r.Lost, closes.Load(), r.Summary())
	}
	if r.IdleCloseRace != r.Lost || r.LostByClass[loadgen.EOF]+r.LostByClass[loadgen.Reset] != r.Lost {
		t.Errorf("want every loss an idle-close race (eof or reset before any byte): %s, race %d", r.Summary(), r.IdleCloseRace)
	}
	if r.BrokenConnections != r.Lost || r.Reconnects != 0 || r.OK != int(answered.Load()) {
		t.Errorf("broken %d, reconnects %d, ok %d of %d answered; want %d, 0, all", r.BrokenConnections, r.Reconnects, r.OK, answered.Load(), r.Lost)
	}
}

// rpcServer answers rpcwire requests, out of order, and can drop a
// connection with requests on it.
type rpcTestServer struct {
	addr     string
	conns    atomic.Int64
	answered atomic.Int64
}

func startRPCServer(t *testing.T, dropEvery int64) *rpcTestServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &rpcTestServer{addr: "rpc://" + ln.Addr().String()}
	var read atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns.Add(1)
			go func() {
				defer c.Close()
				var wmu sync.Mutex
				dropped := false
				br := bufio.NewReader(c)
				for {
					f, err := rpcwire.Read(br)
					if err != nil {
						return
					}
					if dropEvery > 0 && read.Add(1)%dropEvery == 0 {
						wmu.Lock()
						dropped = true
						c.(*net.TCPConn).SetLinger(0)
						wmu.Unlock()
						return
					}
					go func() {
						// Later requests may be answered first.
						time.Sleep(time.Duration(f.ID%3) * time.Millisecond)
						wmu.Lock()
						defer wmu.Unlock()
						if !dropped {
							s.answered.Add(1) // counted before the client can see it
							rpcwire.Write(c, rpcwire.Frame{ID: f.ID, Kind: rpcwire.KindResponse, Payload: []byte("p1 v1")})
						}
					}()
				}
			}()
		}
	}()
	return s
}

func TestLongLivedRPCMultiplexes(t *testing.T) {
	srv := startRPCServer(t, 0)
	cfg := longLived(srv.addr, 10)
	cfg.InFlight = 8
	r := run(t, cfg)
	expectOnly(t, r, loadgen.OK, 0)
	if srv.conns.Load() != 10 || r.Protocol != loadgen.ProtocolRPC {
		t.Errorf("server connections %d, protocol %q; want 10 rpc", srv.conns.Load(), r.Protocol)
	}
	if r.ByPod["p1"] != r.Total || r.ByVersion["v1"] != r.Total || int(srv.answered.Load()) != r.Total {
		t.Errorf("total %d, by pod %v, by version %v, server answered %d", r.Total, r.ByPod, r.ByVersion, srv.answered.Load())
	}
}

// RPC has no polite close: a dropped connection loses every request on it.
func TestLongLivedRPCDroppedConnectionLosesWhatWasOnIt(t *testing.T) {
	srv := startRPCServer(t, 200)
	r := run(t, longLived(srv.addr, 5))
	if r.Lost == 0 || r.BrokenConnections == 0 {
		t.Fatalf("want losses from dropped connections: %s, broken %d", r.Summary(), r.BrokenConnections)
	}
	if r.OK != int(srv.answered.Load()) || r.OK+r.Lost != r.Total {
		t.Errorf("client ok %d, server answered %d, total %d, lost %d", r.OK, srv.answered.Load(), r.Total, r.Lost)
	}
	if r.LostByClass[loadgen.Reset]+r.LostByClass[loadgen.EOF] != r.Lost {
		t.Errorf("want every loss reset or eof: %s", r.Summary())
	}
	// Calls cut with others on the wire are not the idle-close race.
	for _, l := range r.Losses {
		if l.IdleCloseRace && l.FailedAfterMs > loadgen.RaceWindow.Seconds()*1000 {
			t.Errorf("loss %+v called a race %.1fms after its write", l, l.FailedAfterMs)
		}
	}
	// A connection that broke after the last request is not dialled again.
	if conns := int(srv.conns.Load()); conns > 5+r.BrokenConnections || conns < r.BrokenConnections {
		t.Errorf("server saw %d connections; want at most 5 + %d redials", conns, r.BrokenConnections)
	}
}

func TestLongLivedStallIsTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // read nothing, answer nothing
		}
	}()
	cfg := longLived("rpc://"+ln.Addr().String(), 2)
	cfg.Timeout, cfg.Rate, cfg.Duration = 200*time.Millisecond, 20, time.Second
	r := run(t, cfg)
	if r.Lost == 0 || r.LostByClass[loadgen.Timeout] != r.Lost {
		t.Errorf("want only timeouts: %s", r.Summary())
	}
}

func TestLongLivedBadConfig(t *testing.T) {
	if _, err := (loadgen.Config{Targets: []string{"grpc://127.0.0.1:1"}, Connections: 2, Streams: 1, Lenient: true}).Normalize(); err != nil {
		t.Errorf("gRPC with streams and lenient: %v", err)
	}
	for _, cfg := range []loadgen.Config{
		{Targets: []string{"rpc://127.0.0.1:1"}},
		{Targets: []string{"https://127.0.0.1:1/"}, Connections: 1},
		{Targets: []string{"http://127.0.0.1:1/", "rpc://127.0.0.1:1"}, Connections: 2},
		{Targets: []string{"http://127.0.0.1:1/"}, Connections: 5000},
		{Targets: []string{"http://127.0.0.1:1/"}, Connections: 2, Lenient: true},
		{Targets: []string{"rpc://127.0.0.1:1"}, Connections: 2, InFlight: -1},
		{Targets: []string{"rpc://127.0.0.1:1"}, Connections: 2, Streams: 1},
		{Targets: []string{"grpc://127.0.0.1:1"}, Streams: 1},
		{Targets: []string{"grpc://127.0.0.1:1"}, Connections: 2, Streams: -1},
		{Targets: []string{"grpc://127.0.0.1:1"}, Connections: 2, Streams: loadgen.MaxStreams + 1},
		{Targets: []string{"grpc://127.0.0.1:1"}, Connections: 2, StreamMethod: "/a.B/C"},
		{Targets: []string{"grpc://127.0.0.1:1"}, Connections: 2, Streams: 1, StreamMethod: "a.B/C"},
	} {
		if _, err := cfg.Normalize(); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
}

// The other side of the rule: an RPC call written to a connection with
// nothing else on it, which the server drops as the call arrives, is the
// idle-close race; a call cut with others on the wire never is (above).
func TestLongLivedRPCCloseOnAnIdleConnectionIsARace(t *testing.T) {
	srv := startRPCServer(t, 5)
	cfg := longLived(srv.addr, 2)
	cfg.InFlight, cfg.Rate, cfg.Duration = 1, 40, 2*time.Second
	r := run(t, cfg)
	if r.Lost == 0 || r.IdleCloseRace != r.Lost {
		t.Fatalf("want every loss an idle-close race (one call on an idle connection, dropped at once): %s, races %d", r.Summary(), r.IdleCloseRace)
	}
}

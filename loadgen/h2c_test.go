package loadgen_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// h2cServer is net/http's server on loopback speaking HTTP/2 without TLS
// (prior knowledge) besides HTTP/1.1, counting what it answered over
// HTTP/2.
type h2cServer struct {
	srv      *http.Server
	addr     string
	answered atomic.Int64
	http1    atomic.Int64
	delay    atomic.Int64 // how long each answer takes, in ns
}

func startH2CServer(t *testing.T) *h2cServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2cServer{addr: ln.Addr().String()}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(s.delay.Load()))
		w.Header().Set(loadgen.PodHeader, "p1")
		w.Header().Set(loadgen.VersionHeader, "v1")
		w.Write([]byte("ok"))
		if r.ProtoMajor != 2 {
			s.http1.Add(1)
		}
		s.answered.Add(1)
	})}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func h2cLoad(addr string, conns int) loadgen.Config {
	return loadgen.Config{Targets: []string{"h2c://" + addr + "/"}, Connections: conns, InFlight: 4, Rate: 200, Duration: 2 * time.Second, Timeout: 500 * time.Millisecond}
}

// HTTP/2 is one protocol of the table: requests multiplexed on pinned
// connections, each counted with the pod its answer named.
func TestH2CLoad(t *testing.T) {
	srv := startH2CServer(t)
	r := run(t, h2cLoad(srv.addr, 2))
	expectOnly(t, r, loadgen.OK, 0)
	if r.Protocol != "h2c" || !r.Client.HTTP2 || r.Total < 390 || r.ByPod["p1"] != r.Total || int(srv.answered.Load()) != r.Total || srv.http1.Load() != 0 {
		t.Errorf("protocol %q (http2 %v), %s; by pod %v; server answered %d, %d of them over HTTP/1", r.Protocol, r.Client.HTTP2, r.Summary(), r.ByPod, srv.answered.Load(), srv.http1.Load())
	}
	if r.Reconnects != 0 || r.BrokenConnections != 0 || r.NewConnections > 2 {
		t.Errorf("reconnects %d, broken %d, new connections %d; want the 2 connections kept", r.Reconnects, r.BrokenConnections, r.NewConnections)
	}
}

// Shutdown drains HTTP/2 with GOAWAY: what the server took is answered,
// both connections end with nothing cut (reconnects), and every request
// after that is refused: by the closed listener, or, sent as the GOAWAY
// crossed it, by the server unprocessed (a GOAWAY race) — never replayed.
func TestH2CShutdownDrainsWithGoAway(t *testing.T) {
	srv := startH2CServer(t)
	srv.delay.Store(int64(20 * time.Millisecond))
	go func() {
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.srv.Shutdown(ctx)
	}()
	r := run(t, h2cLoad(srv.addr, 2))
	t.Log(r.Summary(), "goaway races ", r.GoAwayRace)
	if r.OK != int(srv.answered.Load()) || r.Lost < 150 || r.LostByClass[loadgen.Refused] != r.Lost {
		t.Errorf("client ok %d, server answered %d: %s; want every loss refused", r.OK, srv.answered.Load(), r.Summary())
	}
	if r.BrokenConnections != 0 || r.Reconnects != 2 {
		t.Errorf("broken %d, reconnects %d; want both connections ended by GOAWAY with nothing cut", r.BrokenConnections, r.Reconnects)
	}
}

// Close with requests on the wire cuts them (EOF or reset, on broken
// connections); what comes after is refused.
func TestH2CCloseCutsWhatIsOnTheWire(t *testing.T) {
	srv := startH2CServer(t)
	srv.delay.Store(int64(30 * time.Millisecond))
	go func() {
		time.Sleep(time.Second)
		srv.srv.Close()
	}()
	r := run(t, h2cLoad(srv.addr, 2))
	t.Log(r.Summary())
	cut := r.LostByClass[loadgen.EOF] + r.LostByClass[loadgen.Reset]
	if cut == 0 || r.BrokenConnections == 0 || r.LostByClass[loadgen.Refused] < 100 || r.LostByClass[loadgen.Other] != 0 {
		t.Errorf("want requests on the wire cut on broken connections, the rest refused, none unclassified: %s, broken %d", r.Summary(), r.BrokenConnections)
	}
}

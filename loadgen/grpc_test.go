package loadgen_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// grpcServer is a real gRPC server on loopback serving the standard
// health service, naming its pod in each answer's header, and counting
// the checks it answered.
type grpcServer struct {
	srv      *grpc.Server
	health   *health.Server
	addr     string
	answered atomic.Int64
	delay    atomic.Int64 // how long each answer takes, in ns
}

func startGRPCServer(t *testing.T, opts ...grpc.ServerOption) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcServer{addr: ln.Addr().String(), health: health.NewServer()}
	g.srv = grpc.NewServer(append(opts, grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs(strings.ToLower(loadgen.PodHeader), "p1", strings.ToLower(loadgen.VersionHeader), "v1"))
		time.Sleep(time.Duration(g.delay.Load()))
		resp, err := h(ctx, req)
		if err == nil {
			g.answered.Add(1)
		}
		return resp, err
	}), grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ss.SetHeader(metadata.Pairs(strings.ToLower(loadgen.PodHeader), "p1"))
		return h(srv, ss)
	}))...)
	healthpb.RegisterHealthServer(g.srv, g.health)
	go g.srv.Serve(ln)
	t.Cleanup(g.srv.Stop)
	return g
}

func grpcLoad(addr string, conns int) loadgen.Config {
	return loadgen.Config{Targets: []string{"grpc://" + addr}, Connections: conns, InFlight: 4, Rate: 200, Duration: 2 * time.Second, Timeout: 500 * time.Millisecond}
}

// gRPC is one protocol of the table: long-lived, multiplexed, every RPC
// counted with the pod and version its answer named.
func TestGRPCLoad(t *testing.T) {
	srv := startGRPCServer(t)
	r := run(t, grpcLoad(srv.addr, 2))
	expectOnly(t, r, loadgen.OK, 0)
	if r.Protocol != "grpc" || r.Total < 390 || r.ByPod["p1"] != r.Total || r.ByVersion["v1"] != r.Total || int(srv.answered.Load()) != r.Total {
		t.Errorf("protocol %q, %s; by pod %v, by version %v; server answered %d", r.Protocol, r.Summary(), r.ByPod, r.ByVersion, srv.answered.Load())
	}
	if r.Reconnects != 0 || r.BrokenConnections != 0 || r.NewConnections > 2 {
		t.Errorf("reconnects %d, broken %d, new connections %d; want the 2 connections kept", r.Reconnects, r.BrokenConnections, r.NewConnections)
	}
}

// A balancing client resolves the name by DNS and keeps a connection per
// address; connections the server ages out with GOAWAY are each counted
// once as a reconnect, none as broken, and nothing is lost.
func TestGRPCRoundRobinOverDNSCountsEachConnection(t *testing.T) {
	srv := startGRPCServer(t, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: time.Second}))
	_, port, _ := net.SplitHostPort(srv.addr)
	cfg := grpcLoad("localhost:"+port, 2)
	cfg.Balancer = "round_robin"
	r := run(t, cfg)
	expectOnly(t, r, loadgen.OK, 0)
	if r.Client.Balancer != "round_robin" || int(srv.answered.Load()) != r.Total {
		t.Errorf("client %+v; server answered %d of %d", r.Client, srv.answered.Load(), r.Total)
	}
	// Two clients, each connection aged out after 300 ms (±10 %) over 2 s.
	if r.BrokenConnections != 0 || r.Reconnects < 6 || r.Reconnects > 20 {
		t.Errorf("reconnects %d, broken %d; want each aged-out connection once, none broken", r.Reconnects, r.BrokenConnections)
	}
}

// A balancer is a gRPC client's: other loads refuse one, and only the
// policies it knows.
func TestBalancerIsValidated(t *testing.T) {
	for _, cfg := range []loadgen.Config{
		{Targets: []string{"http://127.0.0.1:1"}, Rate: 10, Balancer: "round_robin"},
		{Targets: []string{"rpc://127.0.0.1:1"}, Rate: 10, Connections: 1, Balancer: "round_robin"},
		{Targets: []string{"grpc://127.0.0.1:1"}, Rate: 10, Connections: 1, Balancer: "least_request"},
	} {
		if _, err := cfg.Normalize(); !errors.Is(err, loadgen.ErrInvalidConfig) {
			t.Errorf("%v with balancer %q: %v, want invalid", cfg.Targets, cfg.Balancer, err)
		}
	}
}

// A health check answered NOT_SERVING is lost, as a 503 is; the server
// answered it.
func TestGRPCNotServingIsLost(t *testing.T) {
	srv := startGRPCServer(t)
	srv.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	r := run(t, grpcLoad(srv.addr, 1))
	if r.Lost == 0 || r.LostByClass[loadgen.HTTP5xx] != r.Lost {
		t.Fatalf("want every check lost as http_5xx: %s", r.Summary())
	}
	if l := r.Losses[0]; !l.GotResponseByte || !strings.Contains(l.Error, "NOT_SERVING") {
		t.Errorf("loss %+v; want the server's answer named", l)
	}
}

// Strict: a server that stopped (listener closed, connections cut) loses
// what was on the wire, and every later RPC is refused and counted, none
// retried; nothing is called OK the server did not answer.
func TestGRPCStoppedServerLosesAndRefuses(t *testing.T) {
	srv := startGRPCServer(t)
	srv.delay.Store(int64(30 * time.Millisecond)) // RPCs on the wire when it stops
	go func() {
		time.Sleep(time.Second)
		srv.srv.Stop()
	}()
	r := run(t, grpcLoad(srv.addr, 2))
	t.Log(r.Summary())
	cut := r.LostByClass[loadgen.EOF] + r.LostByClass[loadgen.Reset]
	// The server's handler may finish an RPC whose answer the stop then
	// cuts: those are lost, never OK.
	if answered := int(srv.answered.Load()); r.OK > answered || answered-r.OK > cut || r.OK+r.Lost != r.Total {
		t.Errorf("client ok %d, server answered %d, %d cut, total %d, lost %d", r.OK, answered, cut, r.Total, r.Lost)
	}
	if r.Lost < 150 || r.LostByClass[loadgen.Refused] < 100 || cut == 0 || r.BrokenConnections == 0 || r.LostByClass[loadgen.Other] != 0 {
		t.Errorf("want RPCs on the wire cut (eof or reset) on broken connections, the rest refused, none unclassified: %s, broken %d", r.Summary(), r.BrokenConnections)
	}
}

// GracefulStop closes the listener and sends GOAWAY: what was on the wire
// is answered, the clients' connections end without a break, and every
// RPC after that is refused (the server is gone: no one to send it to).
// This is the gRPC server that stops on SIGTERM with no preStop, while
// Kubernetes still routes to it.
func TestGRPCGracefulStopRefusesWhatComesAfter(t *testing.T) {
	srv := startGRPCServer(t)
	go func() {
		time.Sleep(time.Second)
		srv.srv.GracefulStop()
	}()
	r := run(t, grpcLoad(srv.addr, 2))
	t.Log(r.Summary())
	if r.OK != int(srv.answered.Load()) || r.Lost < 150 || r.LostByClass[loadgen.Refused] != r.Lost {
		t.Errorf("client ok %d, server answered %d: %s; want every loss refused", r.OK, srv.answered.Load(), r.Summary())
	}
	if r.BrokenConnections != 0 || r.Reconnects != 2 {
		t.Errorf("broken %d, reconnects %d; want both connections closed by GOAWAY with nothing cut", r.BrokenConnections, r.Reconnects)
	}
	// Each connection's GOAWAY, when it arrived, from the pod that had
	// answered there.
	if len(r.GoAways) != 2 {
		t.Fatalf("GOAWAYs %+v; want one per connection", r.GoAways)
	}
	for _, g := range r.GoAways {
		if at := g.At.Sub(r.Started); g.Pod != "p1" || at < time.Second || at > 1300*time.Millisecond {
			t.Errorf("GOAWAY from %q at +%s; want p1's, just after the stop at +1s", g.Pod, at)
		}
	}
}

// A stream's own connection hears the GOAWAY too: GracefulStop tells
// every connection, the streams' among them, each noted with the pod its
// stream last named.
func TestGRPCStreamsConnectionsGetTheirGOAWAY(t *testing.T) {
	srv := startGRPCServer(t)
	cfg := grpcLoad(srv.addr, 2)
	cfg.Streams = 2
	time.AfterFunc(time.Second, srv.srv.GracefulStop)
	r := run(t, cfg)
	t.Log(r.Summary())
	if len(r.GoAways) != 4 {
		t.Fatalf("GOAWAYs %+v; want one per connection: 2 of the RPCs, 2 of the streams", r.GoAways)
	}
	for _, g := range r.GoAways {
		if at := g.At.Sub(r.Started); g.Pod != "p1" || at < time.Second || at > 1300*time.Millisecond {
			t.Errorf("GOAWAY from %q at +%s; want p1's, just after the stop at +1s", g.Pod, at)
		}
	}
}

// refuseFirstRPC serves a listener's first connection as an HTTP/2 server
// that answers the first stream with GOAWAY (last stream 0: nothing
// processed) and closes; every later connection goes to srv. grpc-go then
// sends the refused RPCs again on a new connection by itself (its
// transparent retry, which no client option turns off). The count it
// returns says how many streams the refusing connection received: with
// several RPCs in flight, more than the first may cross the GOAWAY.
func refuseFirstRPC(t *testing.T, srv *grpc.Server) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := new(atomic.Int32)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go goAwayAtFirstStream(c, refused)
		srv.Serve(ln)
	}()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), refused
}

func goAwayAtFirstStream(c net.Conn, refused *atomic.Int32) {
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	go func() {
		// Reads end when the connection closes below.
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				if refused.Add(1) == 1 {
					fr.WriteGoAway(0, http2.ErrCodeNo, nil)
				}
			}
		}
	}()
	// Close 100 ms after the first stream (or after 5 s with none), so
	// the RPCs already sent behind it reach this connection too.
	for deadline := time.Now().Add(5 * time.Second); refused.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}

// An RPC the server refused unprocessed is sent again by grpc-go: strict
// load counts it lost as refused, lenient load counts it answered and
// retried — as many as the refusing connection received, exactly.
func TestGRPCTransparentRetryIsLostWhenStrict(t *testing.T) {
	for _, lenient := range []bool{false, true} {
		srv := startGRPCServer(t)
		addr, refused := refuseFirstRPC(t, srv.srv)
		cfg := grpcLoad(addr, 1)
		cfg.Lenient, cfg.Duration = lenient, time.Second
		r := run(t, cfg)
		n := int(refused.Load())
		switch {
		case n == 0:
			t.Errorf("the refusing connection received no RPC: %s", r.Summary())
		case !lenient && (r.Lost != n || r.LostByClass[loadgen.Refused] != n || r.Retried != 0):
			t.Errorf("strict: %s, retried %d; want the %d refused RPCs lost as refused", r.Summary(), r.Retried, n)
		case lenient && (r.Lost != 0 || r.Retried != n || !strings.Contains(r.Mode(), "lenient")):
			t.Errorf("lenient: %s, retried %d, mode %q; want nothing lost and %d retried", r.Summary(), r.Retried, r.Mode(), n)
		}
	}
}

// tickService is a server stream that sends one message and ends cleanly
// after its life.
func tickService(life time.Duration) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "test.Tick", HandlerType: (*any)(nil),
		Streams: []grpc.StreamDesc{{StreamName: "Tick", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			if err := ss.SendMsg(&emptypb.Empty{}); err != nil {
				return err
			}
			select {
			case <-time.After(life):
				return nil
			case <-ss.Context().Done():
				return ss.Context().Err()
			}
		}}},
	}
}

// Streams beside the requests: held through a quiet run (the health
// service's Watch), opened again after each clean end (a stream that
// ends by itself), and each cut one lost at the moment it was cut.
func TestGRPCStreams(t *testing.T) {
	srv := startGRPCServer(t)
	cfg := grpcLoad(srv.addr, 2)
	cfg.Streams, cfg.Duration = 3, time.Second
	r := run(t, cfg)
	if r.Lost != 0 || r.StreamsOpened != 3 || r.StreamsHeld != 3 || r.StreamsEndedByServer != 0 || r.StreamMethod != "/grpc.health.v1.Health/Watch" {
		t.Fatalf("held: %s; streams opened %d, held %d, ended %d over %s", r.Summary(), r.StreamsOpened, r.StreamsHeld, r.StreamsEndedByServer, r.StreamMethod)
	}

	tick := grpc.NewServer()
	tick.RegisterService(tickService(300*time.Millisecond), nil)
	healthpb.RegisterHealthServer(tick, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tick.Serve(ln)
	t.Cleanup(tick.Stop)
	cfg = grpcLoad(ln.Addr().String(), 2)
	cfg.Streams, cfg.StreamMethod = 3, "/test.Tick/Tick"
	cfg.Duration = 2 * time.Second
	r = run(t, cfg)
	t.Logf("clean ends: %s; streams opened %d, ended %d, held %d", r.Summary(), r.StreamsOpened, r.StreamsEndedByServer, r.StreamsHeld)
	if r.Lost != 0 || r.StreamsEndedByServer < 12 || r.StreamsOpened != r.StreamsEndedByServer+r.StreamsHeld {
		t.Fatalf("clean ends: %s; streams opened %d, held %d, ended %d", r.Summary(), r.StreamsOpened, r.StreamsHeld, r.StreamsEndedByServer)
	}
}

// A server that stops under its streams cuts each of them: lost, in a
// class, at the moment of the stop, and not counted as ended cleanly.
func TestGRPCStreamsCutByStop(t *testing.T) {
	srv := startGRPCServer(t)
	cfg := grpcLoad(srv.addr, 2)
	cfg.Streams, cfg.Duration = 3, 1500*time.Millisecond
	time.AfterFunc(500*time.Millisecond, srv.srv.Stop)
	r := run(t, cfg)
	cut := 0
	for _, l := range r.Losses {
		if strings.HasSuffix(l.Target, "/grpc.health.v1.Health/Watch") && r.Offset(l.At) < 600*time.Millisecond {
			cut++
		}
	}
	t.Logf("stop: %s; %d streams cut at the stop", r.Summary(), cut)
	if cut != 3 || r.StreamsOpened != 3 || r.StreamsEndedByServer != 0 || r.StreamsHeld != 0 || r.LostByClass[loadgen.Other] != 0 {
		t.Fatalf("%s, by class %v; %d streams lost by 600 ms, opened %d, ended %d, held %d; want the 3 cut at the stop", r.Summary(), r.LostByClass, cut, r.StreamsOpened, r.StreamsEndedByServer, r.StreamsHeld)
	}
}

// The GOAWAYs a generator's clients got travel in its outcome stream's
// end: the merged report lists every generator's, each naming it.
func TestMergedGOAWAYsNameTheirGenerator(t *testing.T) {
	srv := startGRPCServer(t)
	go func() {
		time.Sleep(time.Second)
		srv.srv.GracefulStop()
	}()
	ctx := context.Background()
	cfg := grpcLoad(srv.addr, 2)
	cfg.Rate = 100
	r, err := loadgen.Merge(ctx, []loadgen.Source{{Name: "a", R: emit(t, ctx, cfg)}, {Name: "b", R: emit(t, ctx, cfg)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]int{}
	for i, g := range r.GoAways {
		by[g.Generator]++
		if g.Pod != "p1" || (i > 0 && g.At.Before(r.GoAways[i-1].At)) {
			t.Errorf("GOAWAY %+v; want p1's, in order of arrival", g)
		}
	}
	if by["a"] != 2 || by["b"] != 2 {
		t.Errorf("GOAWAYs by generator %v; want both connections of each", by)
	}
}

package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// startGRPCApp runs the app with gRPC on a loopback port of its own and
// waits until it is ready.
func startGRPCApp(t *testing.T, args ...string) (*proc, string) {
	t.Helper()
	addr := freePort(t)
	p := startApp(t, append([]string{"--grpc-listen", addr}, args...)...)
	p.waitEvent(t, "ready", 5*time.Second)
	return p, addr
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// echoLoad is long-lived gRPC load on Echo: 4 connections, 4 RPCs in
// flight on each.
func echoLoad(addr string, d time.Duration) loadgen.Config {
	return loadgen.Config{Targets: []string{"grpc://" + addr + GRPCEcho}, Connections: 4, Rate: 400, Duration: d}
}

// echoAcrossSIGTERM runs echoLoad for 1.5 s and sends SIGTERM once 200
// RPCs were sent; it returns the report and the server's own counts.
func echoAcrossSIGTERM(t *testing.T, p *proc, addr string) (r *loadgen.Report, received, answered int) {
	t.Helper()
	cfg := echoLoad(addr, 1500*time.Millisecond)
	var once sync.Once
	cfg.Progress = func(pr loadgen.Progress) {
		if pr.Sent >= 200 {
			once.Do(func() { p.cmd.Process.Signal(syscall.SIGTERM) })
		}
	}
	r, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := p.waitEvent(t, "grpc_stopped", 5*time.Second)
	return r, int(e["received"].(float64)), int(e["answered"].(float64))
}

// The app serves the health service, Echo and Watch, each answer naming
// the pod and version.
func TestGRPCServesHealthEchoAndWatch(t *testing.T) {
	_, addr := startGRPCApp(t, "--version", "v5")
	for _, target := range []string{"grpc://" + addr, "grpc://" + addr + GRPCEcho} {
		r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{target}, Connections: 2, Rate: 200, Duration: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Total == 0 || r.Lost != 0 || r.ByPod["test"] != r.Total || r.ByVersion["v5"] != r.Total {
			t.Fatalf("%s: %s, by pod %v, by version %v", target, r.Summary(), r.ByPod, r.ByVersion)
		}
	}
	s := openWatch(t, addr)
	for i := 0; i < 3; i++ {
		var m wrapperspb.StringValue
		if err := s.RecvMsg(&m); err != nil || !strings.HasPrefix(m.Value, "hello from test v5") {
			t.Fatalf("watch message %d: %q, %v", i, m.Value, err)
		}
	}
}

// GracefulStop at SIGTERM answers every RPC it received and refuses the
// rest: what the server got is what the client got, and every loss is a
// refused connection, counted, not sent again.
func TestGRPCGracefulStopAnswersWhatItReceivedAndRefusesTheRest(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--grpc-stop", "graceful", "--work-time", "30ms")
	r, received, answered := echoAcrossSIGTERM(t, p, addr)
	t.Logf("graceful stop: %s, by class %v; server received %d, answered %d", r.Summary(), r.LostByClass, received, answered)
	if r.Lost == 0 || r.LostByClass[loadgen.Refused] != r.Lost || r.Retried != 0 {
		t.Fatalf("graceful stop: %s, by class %v; want losses, all refused", r.Summary(), r.LostByClass)
	}
	if r.OK != received || answered != received {
		t.Fatalf("graceful stop: client got %d answers, the server received %d RPCs and answered %d; want all three equal", r.OK, received, answered)
	}
}

// Stop at SIGTERM closes every connection under the RPCs on it: the
// server received RPCs the client never got an answer to, and they are
// lost as cut (EOF or reset), apart from the refused ones after.
func TestGRPCStopCutsRPCsInFlight(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--grpc-stop", "stop", "--work-time", "30ms")
	r, received, answered := echoAcrossSIGTERM(t, p, addr)
	t.Logf("stop: %s, by class %v; server received %d, answered %d", r.Summary(), r.LostByClass, received, answered)
	cut := r.LostByClass[loadgen.EOF] + r.LostByClass[loadgen.Reset]
	if r.OK > received || received-r.OK == 0 || cut < received-r.OK || r.LostByClass[loadgen.Refused] == 0 {
		t.Fatalf("stop: %s, by class %v, server received %d; want the %d received and unanswered among the cut", r.Summary(), r.LostByClass, received, received-r.OK)
	}
}

// openWatch opens a Watch stream on a connection of its own.
func openWatch(t *testing.T, addr string) grpc.ClientStream {
	t.Helper()
	s, err := dialGRPC(t, addr).NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, GRPCWatch)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	return s
}

// watch opens a Watch stream, reads its first message, and returns a
// channel that yields how it ended (nil: the server ended it with OK).
func watch(t *testing.T, addr string) <-chan error {
	t.Helper()
	s := openWatch(t, addr)
	if err := s.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		for {
			var m wrapperspb.StringValue
			err := s.RecvMsg(&m)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				ended <- err
				return
			}
		}
	}()
	return ended
}

// An open stream holds GracefulStop until the process is killed: the app
// never stops by itself, and the stream is cut by the kill.
func TestGRPCGracefulStopWaitsForAStreamUntilKilled(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--grpc-stop", "graceful")
	ended := watch(t, addr)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitEvent(t, "grpc_stop", 2*time.Second)
	select {
	case err := <-ended:
		t.Fatalf("the stream ended during a graceful stop: %v", err)
	case <-time.After(time.Second):
	}
	if p.event("grpc_stopped") != nil {
		t.Fatal("GracefulStop returned with a stream open")
	}
	p.cmd.Process.Kill()
	if err := <-ended; status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream after SIGKILL ended with %v; want UNAVAILABLE", err)
	}
}

// A bounded graceful stop cuts the stream when its time is up and exits.
func TestGRPCBoundedStopCutsAStreamAfterItsTimeout(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--grpc-stop", "bounded", "--drain-timeout", "500ms")
	ended := watch(t, addr)
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	err := <-ended
	if status.Code(err) != codes.Unavailable || time.Since(sent) < 400*time.Millisecond {
		t.Fatalf("stream ended after %s with %v; want UNAVAILABLE after the 500 ms bound", time.Since(sent), err)
	}
	p.waitEvent(t, "grpc_stop_timeout", 2*time.Second)
	p.waitEvent(t, "exit", 2*time.Second)
}

// With --grpc-end-streams the app ends its streams with OK as it stops,
// so GracefulStop returns at once and the client sees a clean end.
func TestGRPCEndStreamsEndsThemCleanly(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--grpc-stop", "graceful", "--grpc-end-streams")
	ended := watch(t, addr)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-ended; err != nil {
		t.Fatalf("stream ended with %v; want OK", err)
	}
	e := p.waitEvent(t, "grpc_stopped", 2*time.Second)
	if e["streams_ended"].(float64) != 1 {
		t.Fatalf("grpc_stopped: %v", e)
	}
}

// MaxConnectionAge closes each connection with GOAWAY after its age; the
// client moves to a new one and nothing is lost.
func TestGRPCMaxConnectionAgeMovesClientsLosingNothing(t *testing.T) {
	_, addr := startGRPCApp(t, "--grpc-max-connection-age", "300ms", "--grpc-max-connection-age-grace", "1s", "--work-time", "5ms")
	r, err := loadgen.Run(context.Background(), echoLoad(addr, 1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("max connection age: %s, %d reconnects, %d broken, %d GOAWAY races", r.Summary(), r.Reconnects, r.BrokenConnections, r.GoAwayRace)
	if r.Total == 0 || r.Lost != r.GoAwayRace || r.Reconnects < 4 || r.BrokenConnections != 0 {
		t.Fatalf("max connection age: %s, %d reconnects, %d broken; want a reconnect per connection and age, nothing lost but GOAWAY races", r.Summary(), r.Reconnects, r.BrokenConnections)
	}
	// What strict load names a GOAWAY race, a gRPC client sends again: it
	// never reaches the application.
	cfg := echoLoad(addr, 1500*time.Millisecond)
	cfg.Lenient = true
	if r, err = loadgen.Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if r.Total == 0 || r.Lost != 0 {
		t.Fatalf("max connection age, lenient: %s, retried %d; want nothing lost", r.Summary(), r.Retried)
	}
}

// From SIGTERM on the health service says NOT_SERVING while Echo still
// answers (an in-app delay before the stop, as a preStop would give).
func TestGRPCHealthGoesNotServingAtSIGTERM(t *testing.T) {
	p, addr := startGRPCApp(t, "--graceful", "naive", "--shutdown-delay", "2s")
	cc := dialGRPC(t, addr)
	h := healthpb.NewHealthClient(cc)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	if st := check(); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health when ready: %s", st)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitEvent(t, "sigterm", 2*time.Second)
	if st := check(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM: %s", st)
	}
	if err := cc.Invoke(context.Background(), GRPCEcho, &emptypb.Empty{}, new(wrapperspb.StringValue)); err != nil {
		t.Fatalf("echo during the shutdown delay: %v", err)
	}
}

// While the app starts (its port open early) Echo answers UNAVAILABLE
// itself: a status of the server's, lost as its error (http_5xx), not as
// a transport failure.
func TestGRPCStartingAnswersAsTheServer(t *testing.T) {
	addr := freePort(t)
	p := startApp(t, "--grpc-listen", addr, "--listen-early", "--startup-delay", "3s")
	p.waitEvent(t, "listening", 5*time.Second)
	r, err := loadgen.Run(context.Background(), echoLoad(addr, 500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if r.Total == 0 || r.LostByClass[loadgen.HTTP5xx] != r.Total {
		t.Fatalf("starting: %s, by class %v; want every RPC lost as the server's own answer", r.Summary(), r.LostByClass)
	}
}

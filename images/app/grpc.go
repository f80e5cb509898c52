package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// How the gRPC server stops once the app shuts down (--grpc-stop).
const (
	grpcStopHard     = "stop"     // grpc.Server.Stop: every connection closed, RPCs on them cut
	grpcStopGraceful = "graceful" // GracefulStop: GOAWAY, no new RPC, waits for every RPC and stream to end
	grpcStopBounded  = "bounded"  // GracefulStop for --drain-timeout, then Stop
)

// The app's own gRPC service, written without generated code: a unary
// Echo and a server-streaming Watch. Both take any request message (the
// request is not read) and answer "hello from POD VERSION PID".
const (
	grpcService = "nodrop.app.Echo"
	// GRPCEcho and GRPCWatch are the methods' full names, as a client
	// calls them.
	GRPCEcho  = "/" + grpcService + "/Echo"
	GRPCWatch = "/" + grpcService + "/Watch"
)

// watchInterval is how often Watch sends on its stream.
const watchInterval = 50 * time.Millisecond

// grpcServer serves the standard health service and nodrop.app.Echo. The
// health service answers SERVING once the app is ready and NOT_SERVING
// from SIGTERM on, as /readyz does; every answer carries the pod and
// version as header and trailer metadata (x-nodrop-pod,
// x-nodrop-version).
type grpcServer struct {
	cfg    config
	ready  *atomic.Bool
	srv    *grpc.Server
	health *health.Server

	received  atomic.Int64 // RPCs and streams a handler began
	answered  atomic.Int64 // of them, ended by the handler with OK
	streamsOK atomic.Int64 // streams the app ended itself, with OK, as it stopped

	stopping chan struct{} // closed when the server starts to stop
}

func newGRPCServer(cfg config, ready *atomic.Bool) *grpcServer {
	s := &grpcServer{cfg: cfg, ready: ready, health: health.NewServer(), stopping: make(chan struct{})}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.unary), grpc.ChainStreamInterceptor(s.stream)}
	if cfg.grpcMaxAge > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge: cfg.grpcMaxAge, MaxConnectionAgeGrace: cfg.grpcMaxAgeGrace,
		}))
	}
	s.srv = grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s.srv, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: grpcService,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: s.echoHandler}},
		Streams:     []grpc.StreamDesc{{StreamName: "Watch", Handler: s.watch, ServerStreams: true}},
	}, s)
	return s
}

// setServing is what the health service answers from now on.
func (s *grpcServer) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
}

// header names the pod and version in the answer's header, and again in
// its trailer, which comes with the status: a client that got the
// trailer got the server's own answer, whatever its code.
func (s *grpcServer) header(ctx context.Context) {
	md := metadata.Pairs("x-nodrop-pod", s.cfg.pod, "x-nodrop-version", s.cfg.version)
	grpc.SetHeader(ctx, md)
	grpc.SetTrailer(ctx, md)
}

// unary counts each RPC and answers UNAVAILABLE while the app starts.
func (s *grpcServer) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.received.Add(1)
	s.header(ctx)
	resp, err := h(ctx, req)
	if err == nil {
		s.answered.Add(1)
	}
	return resp, err
}

func (s *grpcServer) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	s.received.Add(1)
	s.header(ss.Context())
	err := h(srv, ss)
	if err == nil {
		s.answered.Add(1)
	}
	return err
}

func (s *grpcServer) answer() *wrapperspb.StringValue {
	return wrapperspb.String("hello from " + s.cfg.pod + " " + s.cfg.version + " " + strconv.Itoa(os.Getpid()))
}

func (s *grpcServer) echoHandler(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
	if err := dec(new(emptypb.Empty)); err != nil {
		return nil, err
	}
	call := func(ctx context.Context, _ any) (any, error) { return s.echo(ctx) }
	if ic == nil {
		return call(ctx, nil)
	}
	return ic(ctx, nil, &grpc.UnaryServerInfo{Server: s, FullMethod: GRPCEcho}, call)
}

// echo answers after the app's work time.
func (s *grpcServer) echo(ctx context.Context) (any, error) {
	if !s.ready.Load() {
		return nil, status.Error(codes.Unavailable, "app starting")
	}
	if s.cfg.workTime > 0 {
		select {
		case <-time.After(s.cfg.workTime):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.answer(), nil
}

// watch sends an answer every watchInterval until the client ends the
// stream, or, with --grpc-end-streams, until the server stops (then it
// ends the stream itself, with OK: a graceful close the client can tell
// from a cut).
func (s *grpcServer) watch(_ any, ss grpc.ServerStream) error {
	if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
		return err
	}
	if !s.ready.Load() {
		return status.Error(codes.Unavailable, "app starting")
	}
	end := make(chan struct{})
	if s.cfg.grpcEndStreams {
		end = s.stopping
	}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		if err := ss.SendMsg(s.answer()); err != nil {
			return err
		}
		select {
		case <-t.C:
		case <-end:
			s.streamsOK.Add(1)
			return nil
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
	}
}

// listen serves gRPC on addr.
func (s *grpcServer) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	logEvent(s.cfg, "listening", "addr", ln.Addr().String(), "protocol", "grpc")
	go s.srv.Serve(ln)
	return nil
}

// stop stops the server in the configured style and logs how it went:
// grpc_stop when it begins, grpc_stop_timeout when a bounded graceful stop
// ran out of time, grpc_stopped with the RPCs the server saw.
func (s *grpcServer) stop() {
	logEvent(s.cfg, "grpc_stop", "style", s.cfg.grpcStop)
	start := time.Now()
	s.health.Shutdown()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s.cfg.grpcStop == grpcStopHard {
			s.srv.Stop()
			return
		}
		s.srv.GracefulStop()
	}()
	// Streams end (with --grpc-end-streams) once the stop has begun, so
	// their clients open the next one elsewhere.
	close(s.stopping)
	var bound <-chan time.Time
	if s.cfg.grpcStop == grpcStopBounded {
		bound = time.After(s.cfg.drainTimeout)
	}
	select {
	case <-done:
	case <-bound:
		logEvent(s.cfg, "grpc_stop_timeout", "after", s.cfg.drainTimeout.String())
		s.srv.Stop()
		<-done
	}
	logEvent(s.cfg, "grpc_stopped", "took_ms", time.Since(start).Milliseconds(),
		"received", s.received.Load(), "answered", s.answered.Load(), "streams_ended", s.streamsOK.Load())
}

// checkGRPCStop checks --grpc-stop.
func checkGRPCStop(style string) error {
	switch style {
	case grpcStopHard, grpcStopGraceful, grpcStopBounded:
		return nil
	}
	return fmt.Errorf("--grpc-stop must be %s, got %q", strings.Join([]string{grpcStopHard, grpcStopGraceful, grpcStopBounded}, ", "), style)
}

// stopAll stops the servers that shut down together, at once, and waits
// for all of them.
func stopAll(stops ...func()) {
	var wg sync.WaitGroup
	for _, stop := range stops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop()
		}()
	}
	wg.Wait()
}

// Command app is nodrop's sample server: HTTP, and on ports of their own
// nodrop's RPC protocol and gRPC (the health service, a unary Echo, a
// server-streaming Watch). Its flags reproduce every start-up and
// shut-down behaviour the rollout suites test: slow start, a port that
// opens before the app is ready, no/naive/drain graceful shutdown, an
// in-app delay after SIGTERM, per-request work time, and how gRPC stops
// (Stop, GracefulStop, bounded, streams ended or left open).
//
// Every lifecycle event is one JSON line on stdout, so nodrop can place it
// on the timeline next to what Kubernetes did.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nodrop-dev/nodrop/lifecycle"
)

// Graceful shutdown styles.
const (
	gracefulNone  = "none"  // exit at once on SIGTERM: in-flight requests are cut
	gracefulNaive = "naive" // http.Server.Shutdown at once: closes idle kept-alive connections, racing requests on the wire
	gracefulDrain = "drain" // answer with Connection: close for drain-period, then Shutdown (closes what is still idle)
)

type config struct {
	listen        string
	version       string
	pod           string
	startupDelay  time.Duration
	listenEarly   bool
	graceful      string
	shutdownDelay time.Duration
	drainPeriod   time.Duration
	drainTimeout  time.Duration
	workTime      time.Duration
	rpcListen     string
	h2c           bool

	grpcListen      string
	grpcStop        string
	grpcEndStreams  bool
	grpcMaxAge      time.Duration
	grpcMaxAgeGrace time.Duration

	log *lifecycle.Writer // the lifecycle lines, on stdout
}

func main() {
	// `app --probe URL` is an exec readiness probe that needs no shell or
	// curl in the image: exit 0 when URL answers 2xx.
	if len(os.Args) == 3 && os.Args[1] == "--probe" {
		os.Exit(probe(os.Args[2]))
	}
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(2)
	}
	os.Exit(serve(cfg))
}

// parseConfig reads flags; every flag can also be set by an environment
// variable NODROP_<FLAG> (dashes as underscores), which is what the
// Kubernetes fixtures use.
func parseConfig(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	host, _ := os.Hostname()
	fs.StringVar(&c.listen, "listen", ":8080", "address to serve on")
	fs.StringVar(&c.version, "version", "v1", "value of the X-Nodrop-Version response header")
	fs.StringVar(&c.pod, "pod", host, "value of the X-Nodrop-Pod response header")
	fs.DurationVar(&c.startupDelay, "startup-delay", 0, "time from start until the app is ready")
	fs.BoolVar(&c.listenEarly, "listen-early", false, "open the port before the app is ready (a TCP probe then passes too early)")
	fs.StringVar(&c.graceful, "graceful", gracefulDrain, "shutdown on SIGTERM: none, naive or drain")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 0, "wait this long after SIGTERM before shutting down (an in-app preStop)")
	fs.DurationVar(&c.drainPeriod, "drain-period", 2*time.Second, "drain mode: keep serving with Connection: close this long")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 20*time.Second, "bound on waiting for in-flight requests")
	fs.DurationVar(&c.workTime, "work-time", 0, "time each request takes")
	fs.BoolVar(&c.h2c, "h2c", true, "also speak HTTP/2 without TLS (prior knowledge) on --listen; a drain then closes HTTP/2 connections with GOAWAY")
	fs.StringVar(&c.rpcListen, "rpc-listen", "", "also serve nodrop's multiplexed RPC protocol (package rpcwire) on this address")
	fs.StringVar(&c.grpcListen, "grpc-listen", "", "also serve gRPC (the health service, nodrop.app.Echo's Echo and Watch) on this address")
	fs.StringVar(&c.grpcStop, "grpc-stop", grpcStopGraceful, "how gRPC stops when the app shuts down: stop, graceful or bounded (graceful for --drain-timeout, then stop)")
	fs.BoolVar(&c.grpcEndStreams, "grpc-end-streams", false, "end open Watch streams with OK when gRPC stops (otherwise they run until the client ends them, and a graceful stop waits for them)")
	fs.DurationVar(&c.grpcMaxAge, "grpc-max-connection-age", 0, "close each gRPC connection with GOAWAY after this long (0: never)")
	fs.DurationVar(&c.grpcMaxAgeGrace, "grpc-max-connection-age-grace", 0, "after the GOAWAY of --grpc-max-connection-age, wait this long for RPCs before closing (0: forever)")
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			fs.Set(f.Name, v)
		}
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	switch c.graceful {
	case gracefulNone, gracefulNaive, gracefulDrain:
	default:
		return c, fmt.Errorf("--graceful must be none, naive or drain, got %q", c.graceful)
	}
	c.log = lifecycle.NewWriter(os.Stdout, lifecycle.Line{Pod: c.pod, Version: c.version, PID: os.Getpid()})
	return c, checkGRPCStop(c.grpcStop)
}

func envName(flagName string) string {
	b := []byte("NODROP_" + flagName)
	for i, ch := range b {
		switch {
		case ch == '-':
			b[i] = '_'
		case ch >= 'a' && ch <= 'z':
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}

// logEvent writes one lifecycle event as a JSON line.
func logEvent(cfg config, event string, fields ...any) {
	cfg.log.Write(event, fields...)
}

func serve(cfg config) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	logEvent(cfg, "start", "graceful", cfg.graceful, "args", os.Args[1:])

	var ready, terminating, draining atomic.Bool
	srv := &http.Server{Handler: handler(cfg, &ready, &terminating, &draining), ReadHeaderTimeout: 10 * time.Second}
	if cfg.h2c {
		// Go's HTTP/2 server turns the drain's Connection: close into a
		// GOAWAY, and Shutdown sends one to every HTTP/2 connection.
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}

	rpc := &rpcServer{cfg: cfg, ready: &ready}
	grpcSrv := newGRPCServer(cfg, &ready)
	listen := func() error {
		ln, err := net.Listen("tcp", cfg.listen)
		if err != nil {
			return err
		}
		logEvent(cfg, "listening", "addr", ln.Addr().String())
		go srv.Serve(ln)
		if cfg.rpcListen != "" {
			rln, err := net.Listen("tcp", cfg.rpcListen)
			if err != nil {
				return err
			}
			logEvent(cfg, "listening", "addr", rln.Addr().String(), "protocol", "rpc")
			go rpc.serve(rln)
		}
		if cfg.grpcListen != "" {
			return grpcSrv.listen(cfg.grpcListen)
		}
		return nil
	}
	if cfg.listenEarly {
		if err := listen(); err != nil {
			logEvent(cfg, "exit", "error", err.Error(), "code", 1)
			return 1
		}
	}
	select {
	case <-time.After(cfg.startupDelay):
	case s := <-sigs:
		logEvent(cfg, "sigterm", "signal", s.String(), "phase", "starting")
		logEvent(cfg, "exit", "code", 0)
		return 0
	}
	// An app that listens late is ready before its port opens: a
	// connection accepted as it opens must not read "starting".
	ready.Store(true)
	grpcSrv.setServing(true)
	if !cfg.listenEarly {
		if err := listen(); err != nil {
			logEvent(cfg, "exit", "error", err.Error(), "code", 1)
			return 1
		}
	}
	logEvent(cfg, "ready")

	s := <-sigs
	terminating.Store(true)
	grpcSrv.setServing(false)
	logEvent(cfg, "sigterm", "signal", s.String())
	if cfg.graceful == gracefulNone {
		logEvent(cfg, "exit", "code", 0, "graceful", false)
		return 0
	}
	if cfg.shutdownDelay > 0 {
		time.Sleep(cfg.shutdownDelay)
		logEvent(cfg, "shutdown_delay_over")
	}
	if cfg.graceful == gracefulDrain {
		// Every response from now on carries Connection: close, so each
		// kept-alive client moves to another pod after its current
		// request. Idle connections are left open: closing one races with
		// a request the client may be sending on it (the idle-close race;
		// SetKeepAlivesEnabled(false) would close them at once).
		draining.Store(true)
		logEvent(cfg, "draining", "period", cfg.drainPeriod.String())
		time.Sleep(cfg.drainPeriod)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.drainTimeout)
	defer cancel()
	logEvent(cfg, "listener_closed")
	// RPC clients cannot be told to leave: their connections close with
	// whatever they have in flight.
	rpc.close()
	var err error
	stops := []func(){func() { err = srv.Shutdown(ctx) }}
	if cfg.grpcListen != "" {
		stops = append(stops, grpcSrv.stop)
	}
	stopAll(stops...)
	if errors.Is(err, context.DeadlineExceeded) {
		logEvent(cfg, "drain_timeout", "after", cfg.drainTimeout.String())
		logEvent(cfg, "exit", "code", 1)
		return 1
	}
	logEvent(cfg, "drained")
	logEvent(cfg, "exit", "code", 0)
	return 0
}

func probe(url string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, "probe:", resp.Status)
		return 1
	}
	return 0
}

func handler(cfg config, ready, terminating, draining *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() || terminating.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	// /misbehave/reset and /misbehave/close drop the connection after
	// reading the request (RST, or FIN without a response), so a test can
	// check that the path from load generator to pod delivers each failure
	// unchanged.
	mux.HandleFunc("/misbehave/{how}", func(w http.ResponseWriter, r *http.Request) {
		how := r.PathValue("how")
		if how != "reset" && how != "close" {
			http.NotFound(w, r)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok && how == "reset" {
			tc.SetLinger(0)
		}
		conn.Close()
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Nodrop-Pod", cfg.pod)
		w.Header().Set("X-Nodrop-Version", cfg.version)
		if draining.Load() {
			w.Header().Set("Connection", "close")
		}
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		work := cfg.workTime
		if v := r.URL.Query().Get("work"); v != "" {
			if d, err := time.ParseDuration(v); err == nil {
				work = d
			}
		}
		if work > 0 {
			time.Sleep(work)
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello from " + cfg.pod + " " + cfg.version + " " + strconv.Itoa(os.Getpid()) + "\n"))
	})
	return mux
}

// Command proxy is nodrop's hot-upgradable sidecar proxy. It serves HTTP/1.1,
// nodrop's RPC protocol (package rpcwire) and HTTP/2 without TLS (gRPC),
// and forwards each to the app over localhost.
//
// A new proxy process hot-upgrades an old one in the MOSN/Envoy style: it
// connects to the old process's Unix socket, receives the listening
// sockets with SCM_RIGHTS and starts accepting; the old process stops
// accepting and then either migrates every established connection (its
// FD plus the bytes it had read but not yet used) to the new process, or
// drains them (--upgrade). HTTP/2 connections are always drained, with
// GOAWAY: they cannot be migrated (h2.go). The protocol is in handoff.go.
//
// Under OpenKruise's SidecarSet HotUpgrade (--kruise-socket-dir) the
// socket names come from SIDECARSET_VERSION / SIDECARSET_VERSION_ALT, a
// process with version 0 is the empty placeholder container, and the old
// process stays idle after the handoff until Kruise resets its container.
//
// Every lifecycle step is one JSON line on stdout, as in the sample app.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nodrop-dev/nodrop/lifecycle"
)

// Upgrade modes and drain styles.
const (
	upgradeMigrate = "migrate"
	upgradeDrain   = "drain"

	drainConnectionClose = "connection-close"
	drainCloseIdle       = "close-idle"
)

type config struct {
	listen          string
	rpcListen       string
	upstream        string
	rpcUpstream     string
	grpcListen      string
	grpcUpstream    string
	socket          string
	takeoverFrom    string
	kruiseDir       string
	upgrade         string
	drainStyle      string
	drainPeriod     time.Duration
	upgradeTimeout  time.Duration
	upstreamTimeout time.Duration
	afterHandoff    string
	version         string
	pod             string
	empty           bool
	startupDelay    time.Duration
	passClose       bool

	log *lifecycle.Writer // the lifecycle lines, on stdout
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "wait-serving" {
		os.Exit(waitServing(os.Args[2:]))
	}
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg))
}

func flags(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	host, _ := os.Hostname()
	fs.StringVar(&c.listen, "listen", ":8000", "HTTP/1.1 address")
	fs.StringVar(&c.rpcListen, "rpc-listen", "", "rpcwire address (off when empty)")
	fs.StringVar(&c.upstream, "upstream", "127.0.0.1:8080", "the app's HTTP address")
	fs.StringVar(&c.rpcUpstream, "rpc-upstream", "127.0.0.1:9090", "the app's rpcwire address")
	fs.StringVar(&c.grpcListen, "grpc-listen", "", "HTTP/2 without TLS (gRPC) address (off when empty); its connections are drained with GOAWAY at a handover, never migrated")
	fs.StringVar(&c.grpcUpstream, "grpc-upstream", "127.0.0.1:9091", "the app's gRPC (HTTP/2 without TLS) address")
	fs.StringVar(&c.socket, "socket", "/tmp/nodrop-proxy.sock", "this process's upgrade socket")
	fs.StringVar(&c.takeoverFrom, "takeover-from", "", "upgrade socket of the process to take over from (default: --socket)")
	fs.StringVar(&c.kruiseDir, "kruise-socket-dir", "", "OpenKruise HotUpgrade: sockets are DIR/proxy-$SIDECARSET_VERSION.sock, taking over from …_ALT")
	fs.StringVar(&c.upgrade, "upgrade", upgradeMigrate, "how this process hands over: migrate (connections move to the new process) or drain")
	fs.StringVar(&c.drainStyle, "drain-style", drainConnectionClose, "drain: connection-close (tell HTTP clients to move) or close-idle (close at once: the idle-close race)")
	fs.DurationVar(&c.drainPeriod, "drain-period", 2*time.Second, "drain: how long HTTP responses say Connection: close before the rest is closed")
	fs.DurationVar(&c.upgradeTimeout, "upgrade-timeout", 30*time.Second, "bound on one handoff")
	fs.DurationVar(&c.upstreamTimeout, "upstream-timeout", 10*time.Second, "bound on one request to the app")
	fs.StringVar(&c.afterHandoff, "after-handoff", "exit", "what the old process does once handed over: exit, or idle until SIGTERM (a container must not exit and be restarted)")
	fs.StringVar(&c.version, "version", "v1", "value of the X-Nodrop-Proxy response header")
	fs.StringVar(&c.pod, "pod", host, "pod name in log lines")
	fs.DurationVar(&c.startupDelay, "startup-delay", 0, "wait this long after start before listening (a sidecar slower to start than its app)")
	fs.BoolVar(&c.passClose, "pass-close", false, "pass the app's Connection: close on to the HTTP client (so the app's drain moves the proxy's clients too); otherwise it ends only the proxy's own connection to the app, as hop-by-hop headers do")
	return fs
}

// parseConfig reads flags; each can also be set as NODROP_PROXY_<FLAG>.
func parseConfig(args []string) (config, error) {
	var c config
	fs := flags(&c)
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			fs.Set(f.Name, v)
		}
	})
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.upgrade != upgradeMigrate && c.upgrade != upgradeDrain:
		return c, fmt.Errorf("--upgrade must be migrate or drain, got %q", c.upgrade)
	case c.drainStyle != drainConnectionClose && c.drainStyle != drainCloseIdle:
		return c, fmt.Errorf("--drain-style must be connection-close or close-idle, got %q", c.drainStyle)
	case c.afterHandoff != "exit" && c.afterHandoff != "idle":
		return c, fmt.Errorf("--after-handoff must be exit or idle, got %q", c.afterHandoff)
	}
	if c.kruiseDir != "" {
		v, alt := os.Getenv("SIDECARSET_VERSION"), os.Getenv("SIDECARSET_VERSION_ALT")
		if v == "" {
			return c, fmt.Errorf("--kruise-socket-dir needs SIDECARSET_VERSION (is the SidecarSet's upgradeType HotUpgrade?)")
		}
		c.empty = v == "0"
		if c.empty {
			c.version = "empty"
		}
		c.socket = filepath.Join(c.kruiseDir, "proxy-"+v+".sock")
		c.takeoverFrom = ""
		if alt != "" && alt != "0" {
			c.takeoverFrom = filepath.Join(c.kruiseDir, "proxy-"+alt+".sock")
		}
		c.afterHandoff = "idle"
	} else if c.takeoverFrom == "" {
		c.takeoverFrom = c.socket
	}
	c.log = lifecycle.NewWriter(os.Stdout, lifecycle.Line{Pod: c.pod, Component: "proxy", Version: c.version, PID: os.Getpid()})
	return c, nil
}

func envName(flagName string) string {
	b := []byte("NODROP_PROXY_" + flagName)
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

func logEvent(cfg config, event string, fields ...any) {
	cfg.log.Write(event, fields...)
}

func run(cfg config) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	fail := func(err error) int {
		logEvent(cfg, "exit", "error", err.Error(), "code", 1)
		return 1
	}
	if cfg.empty {
		// Kruise's placeholder: hold the container's place until the next
		// upgrade replaces it.
		logEvent(cfg, "empty", "socket", cfg.socket)
		s := <-sigs
		logEvent(cfg, "exit", "signal", s.String(), "code", 0)
		return 0
	}
	logEvent(cfg, "start", "upgrade", cfg.upgrade, "drain_style", cfg.drainStyle, "socket", cfg.socket, "takeover_from", cfg.takeoverFrom)
	if cfg.startupDelay > 0 {
		select {
		case <-time.After(cfg.startupDelay):
		case s := <-sigs:
			logEvent(cfg, "sigterm", "signal", s.String(), "phase", "starting")
			logEvent(cfg, "exit", "code", 0)
			return 0
		}
	}
	p := newProxy(cfg)
	if cfg.takeoverFrom != "" {
		if _, err := p.takeOver(cfg.takeoverFrom); err != nil {
			return fail(err)
		}
	}
	if err := p.listen(); err != nil {
		return fail(err)
	}
	if len(p.listeners) == 0 {
		return fail(fmt.Errorf("nothing to serve: no --listen, --rpc-listen or --grpc-listen"))
	}
	p.startAccepting()
	ctl, err := listenControl(cfg.socket)
	if err != nil {
		return fail(err)
	}
	logEvent(cfg, "serving", "socket", cfg.socket)

	handed := make(chan error, 1)
	go func() { handed <- p.serveControl(ctl) }()
	select {
	case err := <-handed:
		if err != nil {
			return fail(err)
		}
		if cfg.afterHandoff == "idle" {
			logEvent(cfg, "idle", "reason", "handed over; waiting for SIGTERM")
			s := <-sigs
			logEvent(cfg, "exit", "signal", s.String(), "code", 0)
			return 0
		}
		logEvent(cfg, "exit", "reason", "handed over", "code", 0)
		return 0
	case s := <-sigs:
		logEvent(cfg, "sigterm", "signal", s.String())
		ctl.Close()
		p.stopAccepting()
		p.drain()
		logEvent(cfg, "exit", "code", 0)
		return 0
	}
}

// waitServing is a postStart hook: it returns once this container's
// proxy serves its upgrade socket, which it binds only after a takeover
// is complete. Kruise runs the Migration step in this hook.
func waitServing(args []string) int {
	var c config
	fs := flags(&c)
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if env, ok := os.LookupEnv(envName("kruise-socket-dir")); ok && c.kruiseDir == "" {
		c.kruiseDir = env
	}
	path := c.socket
	if c.kruiseDir != "" {
		v := os.Getenv("SIDECARSET_VERSION")
		if v == "0" || v == "" {
			return 0 // the empty container serves nothing
		}
		path = filepath.Join(c.kruiseDir, "proxy-"+v+".sock")
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unixpacket", path); err == nil {
			conn.Close()
			return 0
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "proxy wait-serving: nothing serves %s after %s\n", path, *timeout)
	return 1
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/rpcwire"
)

var proxyBin, appBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodrop-proxy-test")
	if err != nil {
		panic(err)
	}
	proxyBin, appBin = filepath.Join(dir, "proxy"), filepath.Join(dir, "app")
	for bin, pkg := range map[string]string{proxyBin: ".", appBin: "../app"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a proxy or app process with its JSON log lines.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []map[string]any
	done   chan struct{}
}

func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.mu.Lock()
				p.events = append(p.events, m)
				p.mu.Unlock()
			}
		}
		p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) event(name string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if e["event"] == name {
			return e
		}
	}
	return nil
}

func (p *proc) waitEvent(t *testing.T, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e := p.event(name); e != nil {
			return e
		}
		select {
		case <-p.done:
			if e := p.event(name); e != nil {
				return e
			}
			t.Fatalf("process exited before %q; events: %v", name, p.events)
		case <-time.After(5 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within 10s; events: %v", name, p.events)
	return nil
}

func (p *proc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code %d; events: %v", code, p.events)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running; events: %v", p.events)
	}
}

// setup is an app and the address, socket and flags of a proxy in front.
type setup struct {
	httpAddr, rpcAddr string
	grpcAddr          string
	args              []string
	app               *proc
}

func newSetup(t *testing.T, proxyArgs ...string) setup {
	t.Helper()
	appHTTP, appRPC, appGRPC := freeAddr(t), freeAddr(t), freeAddr(t)
	// 30 ms of work per request keeps requests on the wire on every
	// connection at every moment, as back-to-back clients do.
	app := start(t, appBin, "--listen", appHTTP, "--rpc-listen", appRPC, "--grpc-listen", appGRPC, "--pod", "app", "--work-time", "30ms")
	app.waitEvent(t, "ready")
	s := setup{httpAddr: freeAddr(t), rpcAddr: freeAddr(t), grpcAddr: freeAddr(t), app: app}
	s.args = append([]string{
		"--listen", s.httpAddr, "--rpc-listen", s.rpcAddr, "--upstream", appHTTP, "--rpc-upstream", appRPC,
		"--grpc-listen", s.grpcAddr, "--grpc-upstream", appGRPC,
		"--socket", filepath.Join(t.TempDir(), "proxy.sock"), "--pod", "proxy",
	}, proxyArgs...)
	return s
}

func (s setup) start(t *testing.T, version string) *proc {
	t.Helper()
	p := start(t, proxyBin, append(s.args, "--version", version)...)
	p.waitEvent(t, "serving")
	return p
}

// upgrade starts the next version, which takes over from old, and waits
// for old to exit.
func (s setup) upgrade(t *testing.T, old *proc, version string) *proc {
	t.Helper()
	next := s.start(t, version)
	old.waitExit(t)
	return next
}

// Load through a proxy whose app works 30 ms per request, delivered in
// full: HTTP connections each send every 83 ms, above the slowest
// answer; RPC connections, as Dubbo-style clients do, keep several
// requests on the wire at every moment.
const (
	httpLoadRate = 120
	rpcConns     = 2
	rpcInFlight  = 8
	rpcLoadRate  = 300
)

// underLoad runs long-lived HTTP and RPC load against the proxy while
// during() runs, plus 300 ms, and returns both reports.
func (s setup) underLoad(t *testing.T, conns int, during func()) (httpR, rpcR *loadgen.Report) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(cfg loadgen.Config, out **loadgen.Report) {
		defer wg.Done()
		cfg.Timeout = 2 * time.Second
		r, err := loadgen.Run(ctx, cfg)
		if err != nil {
			t.Error(err)
		}
		*out = r
	}
	wg.Add(2)
	go run(loadgen.Config{Targets: []string{"http://" + s.httpAddr + "/"}, Connections: conns, Rate: httpLoadRate}, &httpR)
	go run(loadgen.Config{Targets: []string{"rpc://" + s.rpcAddr}, Connections: rpcConns, InFlight: rpcInFlight, Rate: rpcLoadRate}, &rpcR)
	time.Sleep(300 * time.Millisecond) // load is flowing on every connection
	during()
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	return httpR, rpcR
}

func table(r *loadgen.Report) string {
	var b strings.Builder
	r.WriteTable(&b)
	return b.String()
}

// The claim: listener handoff plus connection migration loses
// nothing, over HTTP and over RPC, across 20 consecutive upgrades, and no
// client connection is ever closed.
func TestMigrationLosesNothingAcross20Upgrades(t *testing.T) {
	s := newSetup(t, "--upgrade", "migrate")
	cur := s.start(t, "v0")
	var adopted []float64
	httpR, rpcR := s.underLoad(t, 10, func() {
		for i := 1; i <= 20; i++ {
			time.Sleep(100 * time.Millisecond) // load between upgrades, not only across them
			cur = s.upgrade(t, cur, fmt.Sprintf("v%d", i))
			adopted = append(adopted, cur.waitEvent(t, "takeover_done")["adopted_connections"].(float64))
		}
	})
	for _, r := range []*loadgen.Report{httpR, rpcR} {
		if !r.Lossless() || r.BrokenConnections != 0 || r.Reconnects != 0 {
			t.Errorf("%s load across 20 migrations: want 0 lost, 0 broken, 0 reconnects:\n%s", r.Protocol, table(r))
		}
		if r.Total < 300 {
			t.Errorf("%s: only %d requests", r.Protocol, r.Total)
		}
	}
	for i, n := range adopted {
		if n != 10+rpcConns {
			t.Errorf("upgrade %d adopted %v connections, want all %d (10 HTTP + %d RPC)", i+1, n, 10+rpcConns, rpcConns)
		}
	}
}

// gRPC through the proxy across upgrades, in both modes: an HTTP/2
// connection cannot migrate (its header tables and streams live in the
// old process), so the old process sends GOAWAY and serves what is on it
// until it ends, and the client opens its next connection to the new
// one. Unary RPCs lose nothing (a GOAWAY race, an RPC written as the
// GOAWAY arrived, named and allowed); a server stream the app holds open
// cannot move and is cut when the old process's drain period ends — the
// negative control, one per stream and upgrade.
func TestGRPCDrainsThroughUpgradesAndStreamsAreCut(t *testing.T) {
	const upgrades, conns, inFlight, streams = 4, 4, 4, 2
	for _, mode := range []string{"migrate", "drain"} {
		t.Run(mode, func(t *testing.T) {
			s := newSetup(t, "--upgrade", mode, "--drain-period", "500ms")
			cur := s.start(t, "v0")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan *loadgen.Report)
			go func() {
				r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{"grpc://" + s.grpcAddr + "/nodrop.app.Echo/Echo"}, Connections: conns, InFlight: inFlight, Rate: 300,
					Streams: streams, StreamMethod: "/nodrop.app.Echo/Watch", Timeout: 2 * time.Second})
				if err != nil {
					t.Error(err)
				}
				done <- r
			}()
			time.Sleep(500 * time.Millisecond)
			for i := 1; i <= upgrades; i++ {
				cur = s.upgrade(t, cur, fmt.Sprintf("v%d", i))
				time.Sleep(300 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			cancel()
			r := <-done
			t.Log(table(r))
			unary := r.Lost - r.LostByClass[loadgen.EOF] - r.LostByClass[loadgen.Reset]
			if r.Total < 500 || r.BrokenConnections != 0 || unary != r.GoAwayRace || r.GoAwayRace > upgrades*conns*inFlight {
				t.Errorf("%s: want every unary RPC answered but GOAWAY races, no connection broken:\n%s", mode, table(r))
			}
			// Each upgrade's GOAWAY reached every connection the old
			// process served.
			if len(r.GoAways) < upgrades*conns || r.Reconnects < upgrades*conns {
				t.Errorf("%s: %d GOAWAYs, %d reconnects; want every connection moved at each of %d upgrades", mode, len(r.GoAways), r.Reconnects, upgrades)
			}
			if cut := r.LostByClass[loadgen.EOF] + r.LostByClass[loadgen.Reset]; cut != upgrades*streams {
				t.Errorf("%s: %d streams cut; want each of the %d streams at each of %d upgrades:\n%s", mode, cut, streams, upgrades, table(r))
			}
		})
	}
}

// A request cut in two by the handoff keeps its first half: the old
// process hands over the bytes it read, the new one answers.
func TestMigratedConnectionsKeepTheirUnreadBytes(t *testing.T) {
	s := newSetup(t, "--upgrade", "migrate")
	old := s.start(t, "v1")

	hc, err := net.Dial("tcp", s.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	rc, err := net.Dial("tcp", s.rpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	httpReq := "GET /split HTTP/1.1\r\nHost: proxy\r\nX-Long-Header: " + strings.Repeat("x", 100) + "\r\n\r\n"
	rpcReq := rpcwire.Frame{ID: 42, Kind: rpcwire.KindRequest, Payload: []byte("split across the handoff")}.Append(nil)
	half := func(b []byte) int { return len(b) / 2 }
	if _, err := hc.Write([]byte(httpReq[:half([]byte(httpReq))])); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Write(rpcReq[:half(rpcReq)]); err != nil {
		t.Fatal(err)
	}
	// Let the old process read both halves before the upgrade.
	time.Sleep(100 * time.Millisecond)
	next := s.upgrade(t, old, "v2")
	end := old.event("migration_end")
	if end == nil || end["migrated_connections"].(float64) != 2 || int(end["pending_bytes"].(float64)) != half([]byte(httpReq))+half(rpcReq) {
		t.Fatalf("migration_end = %v; want 2 connections carrying both halves", end)
	}
	hc.Write([]byte(httpReq[half([]byte(httpReq)):]))
	rc.Write(rpcReq[half(rpcReq):])

	hc.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(hc), nil)
	if err != nil {
		t.Fatalf("HTTP answer after migration: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(proxyHeader) != "v2" {
		t.Errorf("HTTP answer: %s from proxy %q; want 200 from v2", resp.Status, resp.Header.Get(proxyHeader))
	}
	rc.SetDeadline(time.Now().Add(5 * time.Second))
	f, err := rpcwire.Read(rc)
	if err != nil {
		t.Fatalf("RPC answer after migration: %v", err)
	}
	if f.ID != 42 || f.Status != rpcwire.StatusOK || !strings.HasPrefix(string(f.Payload), "app ") {
		t.Errorf("RPC answer %+v", f)
	}
	next.waitEvent(t, "takeover_done")
}

// Negative controls and the right drain, one upgrade each.
func TestDrainInsteadOfMigration(t *testing.T) {
	t.Run("connection-close drain loses no HTTP request but every RPC connection breaks", func(t *testing.T) {
		s := newSetup(t, "--upgrade", "drain", "--drain-style", "connection-close", "--drain-period", "500ms")
		cur := s.start(t, "v1")
		httpR, rpcR := s.underLoad(t, 10, func() { cur = s.upgrade(t, cur, "v2") })
		if !httpR.Lossless() || httpR.Reconnects < 10 {
			t.Errorf("HTTP: want 0 lost and every connection reopened after Connection: close:\n%s", table(httpR))
		}
		if rpcR.Lost == 0 || rpcR.BrokenConnections == 0 {
			t.Errorf("RPC: want requests lost on broken connections (RPC has no close signal):\n%s", table(rpcR))
		}
	})
	// Closing idle connections at once used to be a negative control, but
	// it was the client's fault: a client that looks at its connection
	// before reusing it sees the close and moves on. Only a request
	// already on its way when the close lands is lost.
	t.Run("closing idle connections at once: clients that look before reuse move on", func(t *testing.T) {
		s := newSetup(t, "--upgrade", "drain", "--drain-style", "close-idle")
		cur := s.start(t, "v1")
		httpR, _ := s.underLoad(t, 10, func() { cur = s.upgrade(t, cur, "v2") })
		if httpR.Reconnects+httpR.Lost < 10 || httpR.IdleCloseRace != httpR.Lost {
			t.Errorf("HTTP: want every connection closed while idle and seen (or lost to the idle-close race):\n%s", table(httpR))
		}
	})
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--upgrade", "teleport"},
		{"--drain-style", "hope"},
		{"--after-handoff", "linger"},
		{"--kruise-socket-dir", "/tmp"}, // no SIDECARSET_VERSION
		{"stray"},
	} {
		cmd := exec.Command(proxyBin, args...)
		cmd.Env = []string{}
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.HasPrefix(string(out), "proxy:") {
			t.Errorf("%v: %v, %q; want exit 2 and one line", args, err, out)
		}
	}
}

// Without a handoff, replacing the proxy (stop the old one, start the new
// one: what a restart or a cold upgrade does) loses requests on both
// protocols, even with the old one draining properly.
func TestRestartWithoutHandoffLoses(t *testing.T) {
	s := newSetup(t, "--drain-period", "200ms")
	cur := s.start(t, "v1")
	httpR, rpcR := s.underLoad(t, 10, func() {
		cur.cmd.Process.Signal(os.Interrupt)
		cur.waitExit(t)
		cur = s.start(t, "v2")
	})
	if httpR.LostByClass[loadgen.Refused] == 0 {
		t.Errorf("HTTP: want refused connections while no process listens:\n%s", table(httpR))
	}
	if rpcR.Lost == 0 {
		t.Errorf("RPC: want requests lost:\n%s", table(rpcR))
	}
}

// The app's drain (Connection: close on each answer) reaches the proxy's
// clients only with --pass-close: otherwise the header is hop-by-hop and
// ends only the proxy's own connection to the app, so clients stay on
// the proxy, which is what a sidecar in front of a terminating app must
// not let them do.
func TestPassCloseCarriesTheAppsDrainToClients(t *testing.T) {
	for _, pass := range []bool{false, true} {
		var args []string
		if pass {
			args = []string{"--pass-close"}
		}
		s := newSetup(t, args...)
		s.start(t, "v1")
		httpR, _ := s.underLoad(t, 10, func() {
			s.app.cmd.Process.Signal(syscall.SIGTERM)
			s.app.waitEvent(t, "sigterm")
		})
		switch {
		case !httpR.Lossless():
			t.Errorf("pass-close %v: want nothing lost while the app drains:\n%s", pass, table(httpR))
		case pass && httpR.Reconnects < 10:
			t.Errorf("pass-close: want every client told to move (%d reconnects):\n%s", httpR.Reconnects, table(httpR))
		case !pass && httpR.Reconnects != 0:
			t.Errorf("without pass-close: want the clients kept (%d reconnects):\n%s", httpR.Reconnects, table(httpR))
		}
	}
}

// A proxy slower to start than its app refuses connections until it
// listens; SIGTERM meanwhile ends it at once.
func TestStartupDelay(t *testing.T) {
	s := newSetup(t, "--startup-delay", "700ms")
	p := start(t, proxyBin, append(s.args, "--version", "v1")...)
	p.waitEvent(t, "start")
	if c, err := net.Dial("tcp", s.httpAddr); err == nil {
		c.Close()
		t.Fatal("the proxy accepted a connection during its start-up delay")
	}
	p.waitEvent(t, "serving")
	c, err := net.Dial("tcp", s.httpAddr)
	if err != nil {
		t.Fatalf("after the delay: %v", err)
	}
	c.Close()

	q := start(t, proxyBin, append(newSetup(t, "--startup-delay", "10s").args, "--version", "v1")...)
	q.waitEvent(t, "start")
	q.cmd.Process.Signal(syscall.SIGTERM)
	q.waitExit(t)
	if e := q.event("sigterm"); e == nil || e["phase"] != "starting" {
		t.Errorf("want a sigterm while starting: %v", q.events)
	}
}

// Requests the app does not answer are answered 502, and the proxy says
// so on its lifecycle log: one upstream_error line at the first, then at
// most one a second with how many there were since, never a line per
// request.
func TestUpstreamErrorsAreLoggedOncePerSecond(t *testing.T) {
	s := newSetup(t)
	p := s.start(t, "v1")
	s.app.cmd.Process.Kill()
	<-s.app.done
	client := &http.Client{Timeout: 2 * time.Second}
	failed := 0
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://" + s.httpAddr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			failed++
		}
	}
	if failed != 20 {
		t.Fatalf("%d of 20 answered 502 with the app gone", failed)
	}
	e := p.waitEvent(t, "upstream_error")
	if e["requests"] != float64(1) || !strings.Contains(fmt.Sprint(e["error"]), "refused") {
		t.Errorf("first upstream_error line: %v; want the first request and its refusal", e)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := 0
	for _, ev := range p.events {
		if ev["event"] == "upstream_error" {
			lines++
		}
	}
	if lines != 1 {
		t.Errorf("%d upstream_error lines for 20 failures within a second; want 1", lines)
	}
}

// An app that closes a kept-alive connection as the proxy writes a
// request on it (its Shutdown closing idle connections) costs the client
// nothing: the proxy sends a request without a body again on a new
// connection, as Go's reverse proxy does. The app here answers the first
// request on each connection and closes the connection at the second
// without answering it.
func TestARequestOnAConnectionTheAppClosedIsSentAgain(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	conns, unanswered := 0, 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if n == 1 {
						mu.Lock()
						unanswered++
						mu.Unlock()
						return
					}
					fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	proxyAddr := freeAddr(t)
	p := start(t, proxyBin, "--listen", proxyAddr, "--upstream", ln.Addr().String(),
		"--socket", filepath.Join(t.TempDir(), "proxy.sock"), "--pod", "proxy", "--version", "v1")
	p.waitEvent(t, "serving")
	client := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 4; i++ {
		resp, err := client.Get("http://" + proxyAddr + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("request %d: %s, want 200 (sent again on a new connection)", i, resp.Status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if unanswered == 0 || conns < 2 {
		t.Errorf("the app closed %d requests' connections over %d connections; want the proxy to have reused one it closed", unanswered, conns)
	}
}

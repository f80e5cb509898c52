package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
)

var appBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nodrop-app-test")
	if err != nil {
		panic(err)
	}
	appBin = filepath.Join(dir, "app")
	if out, err := exec.Command("go", "build", "-o", appBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building app: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is the app running as a real process on a loopback port.
type proc struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	events []map[string]any
	done   chan struct{}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startApp(t *testing.T, args ...string) *proc {
	t.Helper()
	addr := freePort(t)
	p := &proc{url: "http://" + addr + "/", done: make(chan struct{})}
	p.cmd = exec.Command(appBin, append([]string{"--listen", addr, "--pod", "test"}, args...)...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
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

// waitEvent waits for a lifecycle event, or fails after timeout.
func (p *proc) waitEvent(t *testing.T, name string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if e := p.event(name); e != nil {
			return e
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q event within %s; events: %v", name, timeout, p.events)
	return nil
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

// loadAcrossSIGTERM runs keep-alive load for 1 s and sends SIGTERM to the
// app after 400 ms of it.
func loadAcrossSIGTERM(t *testing.T, p *proc) *loadgen.Report {
	t.Helper()
	p.waitEvent(t, "ready", 5*time.Second)
	ctx := context.Background()
	sent := make(chan struct{})
	var once sync.Once
	cfg := loadgen.Config{Targets: []string{p.url}, Rate: 1000, Duration: time.Second, Progress: func(pr loadgen.Progress) {
		if pr.Sent >= 400 {
			once.Do(func() { close(sent) })
		}
	}}
	go func() {
		<-sent
		p.cmd.Process.Signal(syscall.SIGTERM)
	}()
	r, err := loadgen.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Drain mode answers with Connection: close for its drain period and
// leaves idle connections alone: nothing is lost across SIGTERM, in strict
// mode, on kept-alive connections.
func TestDrainLosesNothingAcrossSIGTERM(t *testing.T) {
	p := startApp(t, "--graceful", "drain", "--drain-period", "2s", "--work-time", "20ms")
	r := loadAcrossSIGTERM(t, p)
	if !r.Lossless() {
		var b strings.Builder
		r.WriteTable(&b)
		t.Fatalf("drain lost requests across SIGTERM:\n%s", b.String())
	}
	p.waitEvent(t, "sigterm", time.Second)
	p.waitEvent(t, "exit", 5*time.Second)
	if p.event("drained") == nil {
		t.Errorf("no drained event: %v", p.events)
	}
}

// Naive mode (http.Server.Shutdown at once) closes the listener and the
// idle kept-alive connections at SIGTERM: requests racing on them, and
// every later one, are lost.
func TestNaiveShutdownLoses(t *testing.T) {
	p := startApp(t, "--graceful", "naive", "--work-time", "20ms")
	r := loadAcrossSIGTERM(t, p)
	if r.Lost == 0 {
		t.Fatalf("naive shutdown lost nothing: %s", r.Summary())
	}
}

// Without graceful shutdown the app exits at SIGTERM with requests in
// flight; they are cut.
func TestNoGracefulShutdownCutsInFlight(t *testing.T) {
	p := startApp(t, "--graceful", "none", "--work-time", "50ms")
	r := loadAcrossSIGTERM(t, p)
	if r.LostByClass[loadgen.Reset]+r.LostByClass[loadgen.EOF] == 0 {
		t.Fatalf("exit with requests in flight cut none (reset/EOF): %s", r.Summary())
	}
}

// With --listen-early the port accepts connections while /readyz still
// says 503: a TCP probe passes before the app is ready.
func TestListenEarlyAcceptsBeforeReady(t *testing.T) {
	p := startApp(t, "--listen-early", "--startup-delay", "1500ms")
	p.waitEvent(t, "listening", 5*time.Second)
	addr := strings.TrimSuffix(strings.TrimPrefix(p.url, "http://"), "/")
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("TCP connect before ready: %v", err)
	}
	c.Close()
	if code := get(t, p.url+"readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before ready = %d, want 503", code)
	}
	if code := get(t, p.url); code != http.StatusServiceUnavailable {
		t.Fatalf("/ before ready = %d, want 503", code)
	}
	p.waitEvent(t, "ready", 5*time.Second)
	if code := get(t, p.url+"readyz"); code != http.StatusOK {
		t.Fatalf("/readyz when ready = %d, want 200", code)
	}
}

// Without --listen-early nothing listens until the app is ready.
func TestLateListenRefusesBeforeReady(t *testing.T) {
	p := startApp(t, "--startup-delay", "1s")
	p.waitEvent(t, "start", 5*time.Second)
	addr := strings.TrimSuffix(strings.TrimPrefix(p.url, "http://"), "/")
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("port open before the app is ready")
	}
	p.waitEvent(t, "ready", 5*time.Second)
}

// An app that listens only once it is ready answers its very first
// connections: none accepted as the port opens reads "starting". Clients
// dial from before the port opens until each has had an answer.
func TestLateListenAnswersItsFirstConnections(t *testing.T) {
	for range 5 {
		p := startApp(t, "--startup-delay", "300ms", "--grpc-listen", freePort(t), "--rpc-listen", freePort(t))
		c := http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		var wg sync.WaitGroup
		codes := make(chan int, 64)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
					resp, err := c.Get(p.url)
					if err != nil {
						continue // refused: not listening yet
					}
					resp.Body.Close()
					codes <- resp.StatusCode
					return
				}
			}()
		}
		wg.Wait()
		close(codes)
		n := 0
		for code := range codes {
			n++
			if code != http.StatusOK {
				t.Fatalf("first answer on a fresh connection = %d, want 200", code)
			}
		}
		if n != 32 {
			t.Fatalf("%d of 32 clients had an answer", n)
		}
		p.cmd.Process.Kill()
		<-p.done
	}
}

func TestResponseHeadersAndExecProbe(t *testing.T) {
	p := startApp(t, "--version", "v7")
	p.waitEvent(t, "ready", 5*time.Second)
	resp, err := http.Get(p.url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Nodrop-Pod") != "test" || resp.Header.Get("X-Nodrop-Version") != "v7" {
		t.Errorf("headers: %v", resp.Header)
	}
	if err := exec.Command(appBin, "--probe", p.url+"readyz").Run(); err != nil {
		t.Errorf("exec probe against a ready app: %v", err)
	}
	if err := exec.Command(appBin, "--probe", "http://"+freePort(t)+"/readyz").Run(); err == nil {
		t.Error("exec probe against a closed port succeeded")
	}
}

func get(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The misbehave endpoints fail the way their names say, as loadgen sees it.
func TestMisbehaveEndpoints(t *testing.T) {
	p := startApp(t)
	p.waitEvent(t, "ready", 5*time.Second)
	for path, class := range map[string]loadgen.Class{"misbehave/reset": loadgen.Reset, "misbehave/close": loadgen.EOF} {
		r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{p.url + path}, Rate: 100, Duration: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Total == 0 || r.LostByClass[class] != r.Total {
			t.Errorf("%s: %s; want every request lost as %s", path, r.Summary(), class)
		}
	}
}

// Over the RPC protocol, the same drain that loses nothing on HTTP loses
// the requests on the wire: RPC has no Connection: close, so the app can
// only close the connections under its clients.
func TestRPCAnswersAndItsShutdownLoses(t *testing.T) {
	rpcAddr := freePort(t)
	// 30 ms of work keeps requests on the wire on every connection.
	p := startApp(t, "--graceful", "drain", "--drain-period", "300ms", "--version", "v3", "--rpc-listen", rpcAddr, "--work-time", "30ms")
	p.waitEvent(t, "ready", 5*time.Second)
	cfg := loadgen.Config{Targets: []string{"rpc://" + rpcAddr}, Connections: 10, Rate: 1000, Duration: 500 * time.Millisecond}
	r, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Lossless() || r.ByVersion["v3"] != r.Total || r.ByPod["test"] != r.Total {
		t.Fatalf("healthy rpc: %s, by version %v, by pod %v", r.Summary(), r.ByVersion, r.ByPod)
	}
	cfg.Duration = 1500 * time.Millisecond
	cfg.Progress = func(pr loadgen.Progress) {
		if pr.Sent >= 400 && pr.Elapsed < time.Second {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	r, err = loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.LostByClass[loadgen.Reset]+r.LostByClass[loadgen.EOF] == 0 || r.BrokenConnections == 0 {
		t.Fatalf("rpc across the app's shutdown: %s, broken %d; want requests cut on broken connections", r.Summary(), r.BrokenConnections)
	}
}

// The app speaks HTTP/2 without TLS beside HTTP/1.1. Its drain closes
// each HTTP/2 connection with GOAWAY (Go's server turns the drain's
// Connection: close into one): clients move to new connections with
// nothing cut. What a strict HTTP/2 client can still lose is a request
// that crossed that single GOAWAY, which the server refuses unprocessed
// (a GOAWAY race; net/http's pooled client would send it again).
func TestH2CDrainMovesClientsWithGoAway(t *testing.T) {
	p := startApp(t, "--graceful", "drain", "--drain-period", "2s", "--work-time", "20ms")
	p.waitEvent(t, "ready", 5*time.Second)
	go func() {
		time.Sleep(400 * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGTERM)
	}()
	target := "h2c://" + strings.TrimPrefix(p.url, "http://")
	r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{target}, Connections: 2, InFlight: 4, Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s; reconnects %d, broken %d, GOAWAY races %d", r.Summary(), r.Reconnects, r.BrokenConnections, r.GoAwayRace)
	if r.Protocol != "h2c" || r.Total < 190 || r.ByPod["test"] != r.OK || r.Reconnects == 0 || r.BrokenConnections != 0 || r.Lost != r.GoAwayRace {
		t.Errorf("want every HTTP/2 connection moved by GOAWAY with nothing cut, every loss a GOAWAY race: %s, reconnects %d, broken %d, races %d", r.Summary(), r.Reconnects, r.BrokenConnections, r.GoAwayRace)
	}
}

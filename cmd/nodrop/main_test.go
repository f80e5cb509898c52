package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestLoadExitCodes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer bad.Close()

	code, out, _ := runCLI(t, "load", "--url", ok.URL, "--rate", "100", "--duration", "300ms", "--json")
	if code != exitOK {
		t.Fatalf("healthy server: exit %d", code)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"total", "ok", "lost", "lost_by_class", "rate_achieved", "latency", "timeline"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}

	code, out, _ = runCLI(t, "load", "--url", bad.URL, "--rate", "100", "--duration", "300ms")
	if code != exitLost || !strings.Contains(out, "http_5xx") {
		t.Fatalf("502 server: exit %d, output:\n%s", code, out)
	}
}

// --http2 sends the http:// URL's load over HTTP/2 without TLS, to a
// server that speaks it with prior knowledge.
func TestLoadHTTP2(t *testing.T) {
	var http2 atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			http2.Add(1)
		}
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	code, out, _ := runCLI(t, "load", "--url", srv.URL, "--http2", "--connections", "2", "--rate", "100", "--duration", "300ms", "--json")
	var r struct {
		Total  int `json:"total"`
		Client struct {
			Protocol string `json:"protocol"`
			HTTP2    bool   `json:"http2"`
		} `json:"client"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	if code != exitOK || r.Client.Protocol != "h2c" || !r.Client.HTTP2 || r.Total == 0 || int(http2.Load()) != r.Total {
		t.Fatalf("exit %d, client %+v, %d requests, %d of them over HTTP/2", code, r.Client, r.Total, http2.Load())
	}
}

// Two generators run with --emit, merged with --merge: one report of
// every request, each generator's part named by its file, exit by the
// merged verdict; a stream cut before its end is not judged (exit 3).
func TestLoadEmitAndMerge(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	dir := t.TempDir()
	files := []string{filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")}
	// The generators send at the same time, as a merged load's do.
	codes := make([]int, len(files))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			codes[i] = run(context.Background(), []string{"load", "--url", ok.URL, "--rate", "100", "--duration", "500ms", "--emit"}, &out, io.Discard)
			os.WriteFile(f, out.Bytes(), 0o644)
		}()
	}
	wg.Wait()
	if codes[0] != exitOK || codes[1] != exitOK {
		t.Fatalf("--emit: exit %v", codes)
	}
	code, out, errOut := runCLI(t, "load", "--merge", files[0], "--merge", files[1], "--json")
	var r struct {
		Total      int `json:"total"`
		RateTarget int `json:"rate_target"`
		Generators []struct {
			Name string `json:"name"`
			Sent int    `json:"sent"`
		} `json:"generators"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("--json output is not one JSON object: %v\n%s", err, out)
	}
	if code != exitOK || r.RateTarget != 200 || len(r.Generators) != 2 || r.Generators[0].Name != files[0] || r.Total != r.Generators[0].Sent+r.Generators[1].Sent {
		t.Fatalf("merged: exit %d, %+v, stderr %q", code, r, errOut)
	}
	whole, _ := os.ReadFile(files[1])
	lines := strings.SplitAfter(strings.TrimSuffix(string(whole), "\n"), "\n")
	os.WriteFile(files[1], []byte(strings.Join(lines[:len(lines)-1], "")), 0o644)
	code, out, errOut = runCLI(t, "load", "--merge", files[0], "--merge", files[1])
	if code != exitNotJudged || !strings.Contains(errOut, "generator "+files[1]+": its outcome stream ended before its load did") {
		t.Fatalf("a cut stream merged: exit %d, stderr %q\n%s", code, errOut, out)
	}
}

func TestBadInputIsOneLineAndExit2(t *testing.T) {
	badYAML := filepath.Join(t.TempDir(), "kind.yaml")
	os.WriteFile(badYAML, []byte("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes: [[[\n"), 0o644)
	unknownField := filepath.Join(t.TempDir(), "kind.yaml")
	os.WriteFile(unknownField, []byte("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodez: []\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load"}, "--url is required"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "--rate", "0"}, "--rate must be > 0"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "--rate", "-5"}, "--rate must be > 0"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "--duration", "-1s"}, "duration must not be negative"},
		{[]string{"load", "--url", "not a url"}, "scheme must be http, https, rpc, grpc or h2c"},
		{[]string{"load", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"load", "--merge", "/nonexistent/a.jsonl"}, "--merge: open /nonexistent/a.jsonl: no such file or directory"},
		{[]string{"load", "--merge", "-", "--url", "http://127.0.0.1:1/"}, "--merge reads the streams of generators that sent the load: no --url, no --emit"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "--http2"}, "--http2 is long-lived load: set --connections N"},
		{[]string{"load", "--url", "rpc://127.0.0.1:1", "--http2", "--connections", "1"}, "--http2 needs http:// URLs, got rpc://127.0.0.1:1"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "-H", "novalue"}, `want "Name: value"`},
		{[]string{"cluster", "up", "--config", badYAML}, "does not parse"},
		{[]string{"cluster", "up", "--config", unknownField}, "does not parse"},
		{[]string{"cluster", "up", "--config", "/nonexistent/kind.yaml"}, "reading kind config"},
		{[]string{"render", "no-such-variant"}, `unknown variant "no-such-variant"`},
		{[]string{"render"}, "render takes one variant name"},
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "nodrop"`},
		{[]string{"cluster", "frob"}, `unknown command "frob" for "nodrop cluster"`},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "extra"}, `unknown command "extra"`},
		{[]string{"variants", "extra"}, `unknown command "extra"`},
		{[]string{"load", "--url", "http://127.0.0.1:99999/"}, "port 99999 is not in 1-65535"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "--method", "BAD METHOD"}, `method "BAD METHOD" is not an HTTP method`},
		{[]string{"bench", "--variants", "baseline-good,no-such-variant"}, `--variants: unknown variant "no-such-variant"`},
		{[]string{"bench", "--hot", "nginx-init-usr2,no-such-case"}, `--hot: no hot-upgrade case "no-such-case"`},
		{[]string{"bench", "--all", "--hot", "nginx-init-usr2"}, "not both"},
		{[]string{"bench", "-f", "/nonexistent/app.yaml"}, "-f /nonexistent/app.yaml"},
		{[]string{"bench", "-f", unknownField}, "-f " + unknownField},
		{[]string{"bench"}, "nothing to run"},
		{[]string{"bench", "--all", "--runs", "0"}, "--runs must be 1–100"},
		{[]string{"bench", "--all", "--mode", "sometimes"}, `--mode "sometimes"`},
		{[]string{"bench", "--all", "--disruption", "image=x:1"}, "catalogue variants change to their own v2 image"},
		{[]string{"bench", "extra"}, `unknown command "extra" for "nodrop bench"`},
		{[]string{"bench", "diff", "only-one.json"}, "bench diff takes two results.json files"},
		{[]string{"bench", "diff", "/nonexistent/a.json", "/nonexistent/b.json"}, "/nonexistent/a.json"},
		{[]string{"bench", "diff", unknownField, unknownField}, "is not a nodrop bench results.json"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != exitBadInput || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line containing %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestMissingDockerIsExplained(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	code, _, stderr := runCLI(t, "cluster", "status")
	if code != exitBadInput || !strings.Contains(stderr, "no Docker engine answers") || !strings.Contains(stderr, "ensure-docker") {
		t.Errorf("no engine: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("PATH", t.TempDir())
	code, _, stderr = runCLI(t, "cluster", "status")
	if code != exitBadInput || !strings.Contains(stderr, "no docker command") {
		t.Errorf("no docker CLI: exit %d, stderr %q", code, stderr)
	}
}

func TestVariantsAndRender(t *testing.T) {
	code, out, _ := runCLI(t, "variants")
	if code != exitOK || !strings.Contains(out, "baseline-good") || !strings.Contains(out, "shell-form-cmd") {
		t.Fatalf("variants: exit %d\n%s", code, out)
	}
	// The proxy cases too, a race a run may win said as such.
	for _, want := range []string{"Behind a proxy", "no-prestop via ingress", "baseline-good via haproxy-sf, proxy reloaded", "lossy (a race)", "gray-release-v1-stopped-first"} {
		if !strings.Contains(out, want) {
			t.Errorf("variants lacks %q", want)
		}
	}
	code, out, _ = runCLI(t, "variants", "--detail")
	if code != exitOK || !strings.Contains(out, "shell-form-cmd loses requests as:") || !strings.Contains(out, "starting (keepalive) 10s after pod deleting (SIGKILL at the end of the grace period)") {
		t.Fatalf("variants --detail: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "render", "shell-form-cmd")
	if code != exitOK || !strings.Contains(out, "kind: Deployment") || !strings.Contains(out, "terminationGracePeriodSeconds: 10") {
		t.Fatalf("render: exit %d\n%s", code, out)
	}
}

// A run that cannot be judged exits 3, says why, and is never a pass.
func TestNotJudgedExits3(t *testing.T) {
	var served atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served.Add(1) }))
	defer ok.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"load", "--url", ok.URL, "--rate", "100", "--duration", "5s"}, &out, &errb)
	if code != exitNotJudged || !strings.Contains(errb.String(), "interrupted after 0.") || !strings.Contains(errb.String(), "of 5.0s") {
		t.Errorf("interrupted: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "NOT JUDGED") {
		t.Errorf("interrupted: the table does not say so:\n%s", out.String())
	}

	code, _, stderr := runCLI(t, "load", "--url", ok.URL, "--rate", "30000", "--duration", "500ms", "--max-workers", "2000")
	if code != exitNotJudged || !strings.Contains(stderr, "load not delivered") {
		t.Errorf("undelivered: exit %d, stderr %q", code, stderr)
	}
}

// Bad input sends nothing.
func TestBadInputSendsNothing(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served.Add(1) }))
	defer srv.Close()
	for _, args := range [][]string{
		{"load", "--url", srv.URL, "--method", "BAD METHOD", "--duration", "200ms"},
		{"load", "--url", srv.URL, "--duration", "200ms", "extra"},
	} {
		if code, _, _ := runCLI(t, args...); code != exitBadInput {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	if n := served.Load(); n != 0 {
		t.Errorf("bad input sent %d requests", n)
	}
}

// --version and `nodrop version` say which nodrop this is, on stdout,
// exit 0; `version` takes no arguments.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errs := runCLI(t, args...)
		if code != 0 || !strings.HasPrefix(out, "nodrop ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "node image nodrop/node:v") || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, _ := runCLI(t, "version", "x"); code != exitBadInput {
		t.Errorf("version x: exit %d, want %d", code, exitBadInput)
	}
}

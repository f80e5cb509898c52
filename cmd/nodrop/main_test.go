package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		{[]string{"load", "--url", "not a url"}, "scheme must be http, https or rpc"},
		{[]string{"load", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"load", "--url", "http://127.0.0.1:1/", "-H", "novalue"}, `want "Name: value"`},
		{[]string{"cluster", "up", "--config", badYAML}, "does not parse"},
		{[]string{"cluster", "up", "--config", unknownField}, "does not parse"},
		{[]string{"cluster", "up", "--config", "/nonexistent/kind.yaml"}, "reading kind config"},
		{[]string{"render", "no-such-variant"}, `unknown variant "no-such-variant"`},
		{[]string{"render"}, "render takes one variant name"},
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
	code, out, _ = runCLI(t, "render", "shell-form-cmd")
	if code != exitOK || !strings.Contains(out, "kind: Deployment") || !strings.Contains(out, "terminationGracePeriodSeconds: 10") {
		t.Fatalf("render: exit %d\n%s", code, out)
	}
}

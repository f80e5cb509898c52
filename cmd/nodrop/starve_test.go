package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliEnv makes the test binary run the CLI instead of the tests, so a
// test can start nodrop as a process of its own (in a cgroup).
const cliEnv = "NODROP_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if code, ok := helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	if os.Getenv(cliEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// starvedCgroup makes a CPU cgroup that lets its processes run share of
// one core (cgroup v1's cpu controller or v2's cpu.max) and returns its
// directory (removed when the test ends). These tests run as root, as nodrop's
// make targets do.
func starvedCgroup(t *testing.T, share float64) string {
	t.Helper()
	const period = 100000
	quota := int(share * period)
	name := fmt.Sprintf("nodrop-starved-%d", os.Getpid())
	var dir string
	var limits map[string]string
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir = filepath.Join("/sys/fs/cgroup", name)
		limits = map[string]string{"cpu.max": fmt.Sprintf("%d %d", quota, period)}
		// The cpu controller must be on for the root's children.
		_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+cpu"), 0)
	} else {
		dir = filepath.Join("/sys/fs/cgroup/cpu", name)
		limits = map[string]string{"cpu.cfs_period_us": fmt.Sprint(period), "cpu.cfs_quota_us": fmt.Sprint(quota)}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("making a CPU cgroup to starve nodrop in (needs root and a cpu controller): %v", err)
	}
	t.Cleanup(func() {
		// The processes have exited; an empty cgroup is removed with rmdir.
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	for _, f := range []string{"cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.max"} {
		if v, ok := limits[f]; ok {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0); err != nil {
				t.Fatalf("limiting the cgroup's CPU (%s): %v", f, err)
			}
		}
	}
	return dir
}

// A load generator held to a hundredth of a core cannot send 1,000
// requests a second. The run must say so and exit 3 (not judged), never
// give a verdict: a starved run in a parallel matrix fails loudly
// instead of passing on the load it did send. Long-lived load too: its
// requests wait out the client's own stalls, which must not pass for a
// server that held them.
func TestStarvedLoadGeneratorIsNotJudged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"fresh connections", nil},
		{"long-lived connections", []string{"--connections", "10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A twentieth no longer starves it: on one P nodrop sends
			// 1,000 long-lived requests a second on 3 % of a core.
			dir := starvedCgroup(t, 0.01)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// The shell joins the cgroup, then becomes nodrop: starved from its
			// first instruction.
			args := append([]string{"-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", dir,
				os.Args[0], "load", "--url", srv.URL, "--rate", "1000", "--duration", "2s"}, tc.args...)
			cmd := exec.CommandContext(ctx, "sh", args...)
			cmd.Env = append(os.Environ(), cliEnv+"=1")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitNotJudged {
				t.Fatalf("a starved run must exit %d (not judged); got %v\nstderr:\n%s\nstdout:\n%s", exitNotJudged, err, errb.String(), out.String())
			}
			if !strings.Contains(errb.String(), "not judged") || !strings.Contains(out.String(), "NOT JUDGED") {
				t.Errorf("the run must say why it was not judged and give no verdict:\nstderr:\n%s\nstdout:\n%s", errb.String(), out.String())
			}
		})
	}
}

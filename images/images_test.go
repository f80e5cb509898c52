package images_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop"

	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// stopTimeout is docker stop's grace period in these tests.
const stopTimeout = 4 * time.Second

// Each PID 1 variant, run with docker run and stopped with docker stop:
// does SIGTERM reach the app, and how long does the stop take?
func TestPID1Variants(t *testing.T) {
	refs := buildAll(t)
	for _, tc := range []struct {
		variant     string
		appIsPID1   bool
		seesSIGTERM bool
	}{
		{"exec-form", true, true},
		{"shell-form", false, false},
		{"start-sh-no-exec", false, false},
		{"start-sh-exec", true, true},
		{"tini", false, true},
	} {
		t.Run(tc.variant, func(t *testing.T) {
			t.Parallel()
			events, took := runAndStop(t, refs[tc.variant])
			start := events["start"]
			if start == nil {
				t.Fatalf("no start event; events %v", events)
			}
			if pid1 := start["pid"] == float64(1); pid1 != tc.appIsPID1 {
				t.Errorf("app pid %v: app is PID 1 = %v, want %v", start["pid"], pid1, tc.appIsPID1)
			}
			_, sawTERM := events["sigterm"]
			if sawTERM != tc.seesSIGTERM {
				t.Errorf("app saw SIGTERM = %v, want %v", sawTERM, tc.seesSIGTERM)
			}
			if tc.seesSIGTERM && took > stopTimeout/2 {
				t.Errorf("docker stop took %s; the app should exit at once on SIGTERM", took)
			}
			if !tc.seesSIGTERM && took < stopTimeout-500*time.Millisecond {
				t.Errorf("docker stop took %s; without SIGTERM the app lives until SIGKILL after %s", took, stopTimeout)
			}
			t.Logf("%s: app pid %v, saw SIGTERM %v, docker stop took %s", tc.variant, start["pid"], sawTERM, took.Round(10*time.Millisecond))
		})
	}
}

var (
	buildOnce sync.Once
	builtRefs map[string]string
	buildErr  error
)

// buildAll builds the image catalogue once per test binary.
func buildAll(t *testing.T) map[string]string {
	t.Helper()
	if err := exec.Command("docker", "version").Run(); err != nil {
		t.Fatalf("these tests need a Docker engine (hack/ensure-docker.sh starts one): %v", err)
	}
	buildOnce.Do(func() {
		cache, err := cachedir.Dir()
		if err != nil {
			buildErr = err
			return
		}
		built, err := images.Build(context.Background(), nodrop.Sources, cache, progress.New(os.Stderr, false))
		if err != nil {
			buildErr = err
			return
		}
		builtRefs = map[string]string{}
		for _, b := range built {
			builtRefs[b.Variant] = b.Ref
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtRefs
}

// runAndStop starts the image, waits for the app to be ready, stops the
// container and returns the app's lifecycle events and the stop's length.
func runAndStop(t *testing.T, ref string) (map[string]map[string]any, time.Duration) {
	t.Helper()
	name := fmt.Sprintf("nodrop-pid1-test-%d", time.Now().UnixNano())
	out, err := exec.Command("docker", "run", "-d", "--name", name, "-e", "NODROP_DRAIN_PERIOD=0s", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s: %v\n%s", ref, err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs(name), `"event":"ready"`) {
		if time.Now().After(deadline) {
			t.Fatalf("app in %s not ready after 20 s; logs:\n%s", ref, logs(name))
		}
		time.Sleep(50 * time.Millisecond)
	}
	began := time.Now()
	if out, err := exec.Command("docker", "stop", "-t", fmt.Sprint(int(stopTimeout.Seconds())), name).CombinedOutput(); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	took := time.Since(began)
	events := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(logs(name)))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			if ev, ok := m["event"].(string); ok {
				events[ev] = m
			}
		}
	}
	return events, took
}

func logs(name string) string {
	var b bytes.Buffer
	cmd := exec.Command("docker", "logs", name)
	cmd.Stdout, cmd.Stderr = &b, &b
	cmd.Run()
	return b.String()
}

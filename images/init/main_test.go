package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "init")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building init: %v\n%s", err, out)
	}
	return bin
}

// The property nginx's binary upgrade needs: the first child exits, a
// process it left behind keeps the init (and so the container) running.
func TestOutlivesItsFirstChild(t *testing.T) {
	bin := build(t)
	start := time.Now()
	out, err := exec.Command(bin, "sh", "-c", "(sleep 0.5; echo orphan done) & echo first child done").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if took := time.Since(start); took < 500*time.Millisecond || string(out) != "first child done\norphan done\n" {
		t.Errorf("init returned after %s with %q; want it to wait for the orphan", took, out)
	}
}

// A signal to the init reaches every process of the tree, also one whose
// parent is gone.
func TestForwardsSignalsToTheWholeTree(t *testing.T) {
	bin := build(t)
	cmd := exec.Command(bin, "sh", "-c", "sleep 30 & exit 0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the shell has exited, sleep is the orphan
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Errorf("exit: %v; want 143 (the orphan's SIGTERM)", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("init still running 5 s after SIGTERM: the orphan did not get it")
	}
}

func TestUsage(t *testing.T) {
	err := exec.Command(build(t)).Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("no command: %v, want exit 2", err)
	}
}

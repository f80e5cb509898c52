package witness

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if code, ok := Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// A witness that the kernel stops for 200ms says it stood still for about
// that long, and only then.
func TestWitnessSeesItsOwnStop(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w, err := Spawn(context.Background(), self)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	time.Sleep(50 * time.Millisecond)
	before := time.Now()
	if got := w.StoodStill(before.Add(-time.Second), before); got > 0 {
		t.Logf("stood still %s before the stop (a busy machine)", got)
	}
	if err := w.p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := w.p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	deadline := time.Now().Add(2 * time.Second)
	var got time.Duration
	for time.Now().Before(deadline) {
		if got = w.StoodStill(before, after); got >= 150*time.Millisecond {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got < 150*time.Millisecond || got > after.Sub(before) {
		t.Errorf("stopped for 200ms: the witness says it stood still %s within the %s", got, after.Sub(before))
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A program that does not call Helper first is not taken for the
// witness: Spawn stops it and says so.
func TestSpawnRefusesAnotherProgram(t *testing.T) {
	_, err := Spawn(context.Background(), "/bin/echo")
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("Spawn(/bin/echo) = %v; want an error saying it did not start", err)
	}
}

func TestParseLine(t *testing.T) {
	at, late, ok := parseLine("1700000000000000000 25000000\n")
	if !ok || at.UnixNano() != 1700000000000000000 || late != 25*time.Millisecond {
		t.Errorf("parseLine = %v %v %v", at, late, ok)
	}
	for _, bad := range []string{"", "witness ready", "1 x", "1 -5"} {
		if _, _, ok := parseLine(bad); ok {
			t.Errorf("parseLine(%q) ok", bad)
		}
	}
}

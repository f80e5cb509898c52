package witness

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/internal/sched"
	"golang.org/x/sys/unix"
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

// Spawned by a process in the real-time class, the witness puts itself
// back in the normal class at nice 0, where the pods it stands for run
// (as root; an unprivileged parent cannot be real-time to begin with).
func TestWitnessRunsNormalWhateverItsParent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root may put the parent in the real-time class")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	undo := sched.DuringLoad()
	w, err := Spawn(context.Background(), self)
	undo()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pid := w.p.Cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			continue // the thread has gone
		}
		if a.Policy != unix.SCHED_NORMAL || a.Nice != 0 {
			t.Errorf("witness thread %d: policy %d, priority %d, nice %d; want the normal class at nice 0", tid, a.Policy, a.Priority, a.Nice)
		}
	}
}

package sched

import (
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// report is what the child saw after PreferLoadGenerator.
type report struct {
	Threads       int
	Favoured      bool
	ThreadNices   []int
	Autogroup     int
	HasAutogroup  bool
	AutogroupFrom int
}

// TestChild is the process TestPreferLoadGenerator starts in a session
// of its own, so that the test's own session is left as it was.
func TestChild(t *testing.T) {
	if os.Getenv("NODROP_SCHED_CHILD") != "1" {
		return
	}
	var r report
	r.AutogroupFrom, _ = AutogroupNice()
	r.Threads = PreferLoadGenerator()
	r.Favoured = FavourSession()
	r.Autogroup, r.HasAutogroup = AutogroupNice()
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if p, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil {
			r.ThreadNices = append(r.ThreadNices, 20-p)
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	os.Exit(0)
}

func TestPreferLoadGenerator(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestChild$")
	cmd.Env = append(os.Environ(), "NODROP_SCHED_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a new session: a new autogroup
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	if os.Geteuid() != 0 {
		// Not allowed to raise a priority: nothing may have changed.
		if r.Autogroup != r.AutogroupFrom {
			t.Errorf("autogroup nice %d → %d without the right to", r.AutogroupFrom, r.Autogroup)
		}
		return
	}
	if len(r.ThreadNices) < 2 || r.Threads < len(r.ThreadNices) {
		t.Errorf("%d threads set of %d (%v)", r.Threads, len(r.ThreadNices), r.ThreadNices)
	}
	for i, n := range r.ThreadNices {
		if n != GeneratorNice {
			t.Errorf("thread %d at nice %d, want %d: %v", i, n, GeneratorNice, r.ThreadNices)
			break
		}
	}
	if r.HasAutogroup {
		if r.AutogroupFrom != 0 || r.Autogroup != GeneratorNice || !r.Favoured {
			t.Errorf("autogroup nice %d → %d (favoured %v), want 0 → %d", r.AutogroupFrom, r.Autogroup, r.Favoured, GeneratorNice)
		}
	} else {
		t.Logf("this kernel groups no sessions (sched_autogroup_enabled off): threads only")
	}
}

// DuringLoad puts every thread of the process in SCHED_RR 1 and its undo
// puts every one back in the normal class at GeneratorNice (as root; an
// unprivileged process changes nothing).
func TestDuringLoad(t *testing.T) {
	policies := func() (rr, normal int) {
		for _, tid := range Threads() {
			a, err := unix.SchedGetAttr(tid, 0)
			switch {
			case err != nil:
			case a.Policy == unix.SCHED_RR && a.Priority == 1:
				rr++
			case a.Policy == unix.SCHED_NORMAL && a.Nice == GeneratorNice:
				normal++
			}
		}
		return rr, normal
	}
	undo := DuringLoad()
	rr, _ := policies()
	undo()
	_, normal := policies()
	n := len(Threads())
	if os.Geteuid() != 0 {
		if rr != 0 {
			t.Errorf("%d threads real-time without the right to", rr)
		}
		return
	}
	if rr < n-1 || normal < n-1 {
		t.Errorf("of %d threads, %d were real-time during the load and %d back at nice %d after", n, rr, normal, GeneratorNice)
	}
}

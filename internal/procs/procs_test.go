package procs

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStatNameWithSpacesAndParentheses(t *testing.T) {
	line := "4242 (my (odd) name) R 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 0 0\n"
	p, ok := parseStat([]byte(line))
	if !ok || p.name != "my (odd) name" || p.cpu != 3*time.Second {
		t.Fatalf("parseStat = %+v %v, want name %q and 3s", p, ok, "my (odd) name")
	}
	if _, ok := parseStat([]byte("4242 (cut")); ok {
		t.Error("a line with no end to its name parsed")
	}
}

// writeProc writes a process's stat file into a fake /proc.
func writeProc(t *testing.T, root string, pid int, name string, ticks int) {
	t.Helper()
	writeProcStarted(t, root, pid, name, ticks, 1)
}

// writeProcStarted is writeProc with the process's start time, in ticks
// since boot.
func writeProcStarted(t *testing.T, root string, pid int, name string, ticks, start int) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	line := strconv.Itoa(pid) + " (" + name + ") S 1 1 1 0 -1 0 0 0 0 0 " + strconv.Itoa(ticks) + " 0 0 0 20 0 1 0 " + strconv.Itoa(start) + " 0 0\n"
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Over a span, each name's processes are summed, a process that started
// within the span counts from zero, one that ended is left out, idle ones
// and the 1 %-of-a-CPU crumbs are not listed.
func TestBusiestSumsByName(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 10, "kube-apiserver", 1000)
	writeProc(t, root, 11, "compile", 500)
	writeProc(t, root, 12, "etcd", 300)
	writeProc(t, root, 13, "gone", 100)
	writeProc(t, root, 14, "idle", 40)
	writeProc(t, root, 17, "kworker/u8:1-flush", 880)
	writeProc(t, root, 18, "old", 4000)
	os.WriteFile(filepath.Join(root, "self"), nil, 0o644) // not a PID: skipped
	a := Take(root)
	writeProc(t, root, 10, "kube-apiserver", 1060) // 0.6 s
	writeProc(t, root, 11, "compile", 580)         // 0.8 s
	writeProc(t, root, 15, "compile", 70)          // new: 0.7 s
	writeProc(t, root, 12, "etcd", 300)            // nothing
	writeProc(t, root, 14, "idle", 40)
	writeProc(t, root, 16, "crumb", 0)
	writeProc(t, root, 17, "kworker/u8:1-events_unbound", 900)
	writeProcStarted(t, root, 18, "new", 5, 7)
	os.RemoveAll(filepath.Join(root, "13"))
	b := Take(root)
	b.At = a.At.Add(time.Second)

	got := Busiest(a, b, 5)
	// The kernel worker renamed by its work counts from its own earlier
	// time (0.2 s), PID 18 reused by a new process from zero (0.05 s).
	want := []Use{{Name: "compile", Procs: 2, CPU: 1.5}, {Name: "kube-apiserver", Procs: 1, CPU: 0.6},
		{Name: "kworker/u8:1-events_unbound", Procs: 1, CPU: 0.2}, {Name: "new", Procs: 1, CPU: 0.05}}
	if len(got) != len(want) {
		t.Fatalf("Busiest = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || got[i].Procs != want[i].Procs || got[i].CPU < want[i].CPU-1e-9 || got[i].CPU > want[i].CPU+1e-9 {
			t.Fatalf("Busiest = %v, want %v", got, want)
		}
	}
	if s := List(got); s != "compile ×2 150%, kube-apiserver 60%, kworker/u8:1-events_unbound 20%, new 5%" {
		t.Errorf("List = %q", s)
	}
	if got := Busiest(a, b, 1); len(got) != 1 || got[0].Name != "compile" {
		t.Errorf("Busiest(n=1) = %v", got)
	}
}

// On the real /proc, a goroutine that spins is this process's CPU.
func TestBusiestFindsASpinningProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	a := Take("/proc")
	time.Sleep(500 * time.Millisecond)
	b := Take("/proc")
	close(stop)
	<-done
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := parseStat(self)
	for _, u := range Busiest(a, b, 50) {
		if u.Name == p.name {
			if u.CPU < 0.1 {
				t.Errorf("%s used %.0f%% of a CPU while spinning, want most of one", u.Name, 100*u.CPU)
			}
			return
		}
	}
	t.Errorf("%s, spinning, not among the busiest: %v", p.name, Busiest(a, b, 50))
}

// What one reading of the machine's processes costs: the generator takes
// one a second while it sends (docs/stalls.md).
func BenchmarkTake(b *testing.B) {
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	n, before := 0, cpu()
	for b.Loop() {
		n = len(Take("/proc").procs)
	}
	b.ReportMetric(float64(n), "procs")
	b.ReportMetric(float64(cpu()-before)/float64(b.N)/1e6, "cpu-ms/op")
}

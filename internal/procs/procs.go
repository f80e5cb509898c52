// Package procs says which processes of the machine used its CPU over a
// span: two readings of /proc apart, each process's CPU time between
// them, summed by command name. When the machine is short of CPU, these
// are the names that took it (a kube-apiserver, a compiler, another
// test), as seen from where nodrop runs: on the host, every process of
// the machine, kind's node containers included; in a pod, the pod's own.
package procs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, which
// Linux fixes at 100 for user space).
const userHZ = 100

// Snapshot is the CPU time every process had used by a moment.
type Snapshot struct {
	At    time.Time
	procs map[int]proc
}

type proc struct {
	name string
	cpu  time.Duration // user and system time of all its threads
	// start is when it started, in clock ticks since boot: with the
	// PID, which process it is (a PID is reused; a kernel worker's name
	// changes with the work it does).
	start int64
}

// Take reads every process's CPU time from root (a proc file system:
// "/proc"). A process that ends while it reads is left out; a root that
// cannot be listed gives an empty snapshot.
func Take(root string) Snapshot {
	s := Snapshot{At: time.Now(), procs: map[int]proc{}}
	d, err := os.Open(root)
	if err != nil {
		return s
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	buf := make([]byte, 1024) // a stat line is some 300 bytes
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, ok := readSmall(filepath.Join(root, n, "stat"), buf)
		if !ok {
			continue
		}
		if p, ok := parseStat(b); ok {
			s.procs[pid] = p
		}
	}
	return s
}

// readSmall reads a small file into buf with one open, read and close
// (os.ReadFile stats it first).
func readSmall(path string, buf []byte) ([]byte, bool) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, buf)
	if err != nil || n <= 0 {
		return nil, false
	}
	return buf[:n], true
}

// parseStat reads the command name and the CPU time (utime + stime) of a
// /proc/PID/stat line. The name is in parentheses and may hold spaces or
// parentheses itself, so the fields are counted from its last ")".
func parseStat(b []byte) (proc, bool) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return proc{}, false
	}
	f := strings.Fields(string(b[end+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15) ...
	// starttime(22).
	if len(f) < 20 {
		return proc{}, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	start, err3 := strconv.ParseInt(f[19], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return proc{}, false
	}
	return proc{name: string(b[open+1 : end]), cpu: time.Duration(ut+st) * time.Second / userHZ, start: start}, true
}

// Use is what the processes of one command name used of the CPU over a
// span.
type Use struct {
	Name string `json:"name"`
	// Procs is how many processes of that name used some.
	Procs int `json:"procs"`
	// CPU is in CPUs over the span (1.5: one and a half CPUs).
	CPU float64 `json:"cpu"`
}

func (u Use) String() string {
	if u.Procs > 1 {
		return fmt.Sprintf("%s ×%d %.0f%%", u.Name, u.Procs, 100*u.CPU)
	}
	return fmt.Sprintf("%s %.0f%%", u.Name, 100*u.CPU)
}

// Busiest is what each command name used of the CPU from a to b, the
// most first, at most n names and only those that used at least 1 % of a
// CPU. A process is known by its PID and start time; one that started
// after a counts from zero, one that ended before b is not counted. A
// process is named as it was at b (a kernel worker's name changes with
// its work: kworker/u8:1-events_unbound).
func Busiest(a, b Snapshot, n int) []Use {
	span := b.At.Sub(a.At)
	if span <= 0 {
		return nil
	}
	by := map[string]*Use{}
	for pid, p := range b.procs {
		used := p.cpu
		if q, ok := a.procs[pid]; ok && q.start == p.start {
			used -= q.cpu
		}
		if used <= 0 {
			continue
		}
		u := by[p.name]
		if u == nil {
			u = &Use{Name: p.name}
			by[p.name] = u
		}
		u.Procs++
		u.CPU += float64(used) / float64(span)
	}
	out := make([]Use, 0, len(by))
	for _, u := range by {
		if u.CPU >= 0.01 {
			out = append(out, *u)
		}
	}
	slices.SortFunc(out, func(x, y Use) int {
		if x.CPU != y.CPU {
			if x.CPU > y.CPU {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// List writes uses as one phrase: "kube-apiserver 62%, compile ×3 140%".
func List(uses []Use) string {
	parts := make([]string, len(uses))
	for i, u := range uses {
		parts[i] = u.String()
	}
	return strings.Join(parts, ", ")
}

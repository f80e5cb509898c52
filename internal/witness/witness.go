// Package witness runs a second, tiny process beside nodrop's load
// generator that wakes every few milliseconds and says when it woke late.
// When the generator stood still, the witness tells the two cases apart:
// the whole machine stood still (the witness, at normal priority, was late
// too: the pods under test were paused with the generator), or the
// generator alone did (the cluster ran on while nodrop did not look).
//
// The witness is a program that calls Helper first thing (nodrop's binary,
// the suites' test binary), started by Spawn; it holds no sockets and
// allocates nothing while it watches, so what delays it is the machine.
package witness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodrop-dev/nodrop/internal/helperproc"
	"github.com/nodrop-dev/nodrop/internal/sched"
)

// execCommand is the witness's command line. It runs in a session of its
// own, so where the kernel groups processes by session for the CPU
// (autogroup) it competes as any other program on the machine does, not
// inside nodrop's share; it dies with its parent.
func execCommand(self string) *exec.Cmd {
	cmd := exec.Command(self, HelperArg)
	cmd.SysProcAttr = &unix.SysProcAttr{Pdeathsig: unix.SIGKILL, Setsid: true}
	return cmd
}

// HelperArg, as a program's first argument, makes it the witness (Helper).
// It is no command a person types.
const HelperArg = "__nodrop-witness"

const (
	// Tick is how often the witness wakes.
	Tick = 5 * time.Millisecond
	// Threshold is the smallest oversleep it reports.
	Threshold = 10 * time.Millisecond
	// ready is the line the witness writes once it watches.
	ready = "witness ready"
	// kept bounds the stalls a Witness remembers (the oldest go first).
	kept = 20000
)

// Helper runs the witness when args (os.Args[1:]) start with HelperArg,
// and returns its exit code and true; otherwise it does nothing and
// returns false. It watches until its stdin closes (the parent closed it,
// or died), writing one line per late wake-up: the Unix time in
// nanoseconds it should have woken at and how late it was.
func Helper(args []string) (int, bool) {
	if len(args) == 0 || args[0] != HelperArg {
		return 0, false
	}
	atNormalPriority()
	// One P: the ticker's timer is always on the P whose thread waits
	// for it, so no second thread has to be woken to fire it.
	runtime.GOMAXPROCS(1)
	return watch(os.Stdin, os.Stdout, Tick, Threshold), true
}

// atNormalPriority puts every thread of this process in the normal
// class at nice 0: the parent's threads may run at a higher priority or
// in the real-time class (internal/sched), which a child inherits, and
// the witness must stand for the pods, which run normal at 0.
func atNormalPriority() {
	sched.Normal(0)
}

func watch(stdin io.Reader, stdout io.Writer, tick, threshold time.Duration) int {
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	w := bufio.NewWriter(stdout)
	fmt.Fprintln(w, ready)
	if w.Flush() != nil {
		return 1
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	buf := make([]byte, 0, 64)
	for {
		select {
		case <-eof:
			return 0
		case <-t.C:
			now := time.Now()
			if late := now.Sub(last) - tick; late >= threshold {
				buf = strconv.AppendInt(buf[:0], last.Add(tick).UnixNano(), 10)
				buf = append(buf, ' ')
				buf = strconv.AppendInt(buf, int64(late), 10)
				buf = append(buf, '\n')
				if _, err := w.Write(buf); err != nil || w.Flush() != nil {
					return 1
				}
			}
			last = now
		}
	}
}

// Witness is a running witness process (Spawn).
type Witness struct {
	p *helperproc.Proc

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	stalls []span
}

type span struct{ from, to time.Time }

// Spawn starts the witness: self is a program that calls Helper first
// (normally this one, os.Executable). It returns once the witness
// watches, or the process's error.
func Spawn(ctx context.Context, self string) (*Witness, error) {
	w := &Witness{}
	p, err := helperproc.Start(ctx, execCommand(self), "the witness", ready, 10*time.Second, w.read)
	if err != nil {
		return nil, err
	}
	w.p = p
	return w, nil
}

// read takes the witness's lines until its output ends.
func (w *Witness) read(r *bufio.Reader) {
	for {
		l, err := r.ReadString('\n')
		if at, late, ok := parseLine(l); ok {
			w.mu.Lock()
			if len(w.stalls) == kept {
				w.stalls = append(w.stalls[:0], w.stalls[kept/2:]...)
			}
			w.stalls = append(w.stalls, span{at, at.Add(late)})
			w.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

func parseLine(l string) (time.Time, time.Duration, bool) {
	a, b, ok := strings.Cut(strings.TrimSpace(l), " ")
	if !ok {
		return time.Time{}, 0, false
	}
	at, err1 := strconv.ParseInt(a, 10, 64)
	late, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || late < 0 {
		return time.Time{}, 0, false
	}
	return time.Unix(0, at), time.Duration(late), true
}

// StoodStill is how long the witness stood still within [from, to]: the
// machine as a whole, not nodrop alone, was late then.
func (w *Witness) StoodStill(from, to time.Time) time.Duration {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var d time.Duration
	for _, s := range w.stalls {
		lo, hi := s.from, s.to
		if lo.Before(from) {
			lo = from
		}
		if hi.After(to) {
			hi = to
		}
		if hi.After(lo) {
			d += hi.Sub(lo)
		}
	}
	return d
}

// Close ends the witness process; what it saw stays readable.
func (w *Witness) Close() error {
	if w == nil {
		return nil
	}
	w.closeOnce.Do(func() {
		_ = w.p.Stdin.Close()
		select {
		case w.closeErr = <-w.p.Done:
		case <-time.After(5 * time.Second):
			_ = w.p.Cmd.Process.Kill()
			w.closeErr = errors.New("the witness did not stop within 5s")
		}
	})
	return w.closeErr
}

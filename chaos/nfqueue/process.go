package nfqueue

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nodrop-dev/nodrop/internal/helperproc"
)

// HelperArg, as a program's first argument, makes it the delayer's own
// process (Helper). It is no command a person types.
const HelperArg = "__nodrop-nfqueue"

// ready is the line the helper process writes once its queue is bound.
const ready = "nfqueue ready"

// Helper runs the delayer's process when args (a program's arguments,
// os.Args[1:]) start with HelperArg, and returns its exit code and true;
// otherwise it does nothing and returns false. A program whose delay
// faults hold packets in a process of their own (Spawn) calls it first
// thing in main; a test binary in TestMain.
//
// The process binds the queue, says so on stdout, and holds packets
// until its stdin closes (the parent closed it, or died) or it gets
// SIGINT or SIGTERM; then it lets the held packets go and exits.
func Helper(args []string) (int, bool) {
	if len(args) == 0 || args[0] != HelperArg {
		return 0, false
	}
	return helper(args[1:], os.Stdin, os.Stdout, os.Stderr), true
}

func helper(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	f := flag.NewFlagSet(HelperArg, flag.ContinueOnError)
	f.SetOutput(stderr)
	netns := f.String("netns", "", "network namespace path")
	queue := f.Uint("queue", 0, "NFQUEUE number")
	delay := f.Duration("delay", 0, "how long each packet is held")
	jitter := f.Duration("jitter", 0, "give or take")
	if err := f.Parse(args); err != nil || *queue == 0 || *queue > 65535 || *delay <= 0 {
		fmt.Fprintln(stderr, "nfqueue helper: want --netns PATH --queue N --delay D [--jitter J]")
		return 2
	}
	// Ctrl-C reaches the whole process group: the parent undoes the
	// fault, and this process lets its packets go either way.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	d, err := Start(*netns, uint16(*queue), *delay, *jitter)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, ready)
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-sig:
	}
	if err := d.Close(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// Process is a Delayer running in a process of its own (Spawn).
type Process struct {
	p    *helperproc.Proc
	hold time.Duration
}

// Spawn runs Start's delayer in a process of its own: self is a program
// that calls Helper first (nodrop's binary, the suites' test binary),
// normally this one (os.Executable). Held apart, the reader's timers and
// syscalls (a node forwards thousands of packets a second) do not share
// a Go runtime with the load generator, whose schedule they would
// disturb. It returns once the queue is bound, or the process's error.
func Spawn(ctx context.Context, self, netns string, queue uint16, delay, jitter time.Duration) (*Process, error) {
	cmd := exec.Command(self, HelperArg, "--netns", netns, "--queue", strconv.Itoa(int(queue)),
		"--delay", delay.String(), "--jitter", jitter.String())
	p, err := helperproc.Start(ctx, cmd, "the packet holder", ready, 10*time.Second, nil)
	if err != nil {
		return nil, err
	}
	return &Process{p: p, hold: delay + jitter}, nil
}

// Close lets every held packet go and ends the process (remove the
// NFQUEUE rule first, so nothing new arrives).
func (p *Process) Close() error {
	_ = p.p.Stdin.Close()
	select {
	case err := <-p.p.Done:
		if err != nil {
			return fmt.Errorf("the packet holder: %w: %s", err, p.p.Stderr())
		}
		return nil
	case <-time.After(p.hold + 5*time.Second):
		_ = p.p.Cmd.Process.Kill()
		<-p.p.Done
		return errors.New("the packet holder did not stop: killed (the kernel lets its queued packets through)")
	}
}

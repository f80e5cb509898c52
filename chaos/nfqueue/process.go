package nfqueue

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
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
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *strings.Builder
	done   chan error
	hold   time.Duration
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
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, stdin: stdin, stderr: &strings.Builder{}, done: make(chan error, 1), hold: delay + jitter}
	cmd.Stderr = p.stderr // read only once Wait has returned
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the packet holder (%s): %w", self, err)
	}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		first, _ := r.ReadString('\n')
		line <- strings.TrimSpace(first)
		_, _ = io.Copy(io.Discard, r) // Wait only once the output is read through
		p.done <- cmd.Wait()
	}()
	fail := func(why error) (*Process, error) {
		_ = cmd.Process.Kill()
		werr := <-p.done
		return nil, fmt.Errorf("the packet holder (%s %s) %w: %v %s", self, HelperArg, why, werr, strings.TrimSpace(p.stderr.String()))
	}
	select {
	case first := <-line:
		if first != ready {
			// Anything else is a program that does not call Helper
			// first: stop it before it does whatever it does.
			return fail(fmt.Errorf("did not start (said %q)", first))
		}
		return p, nil
	case <-time.After(10 * time.Second):
		return fail(errors.New("did not bind its queue within 10s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// Close lets every held packet go and ends the process (remove the
// NFQUEUE rule first, so nothing new arrives).
func (p *Process) Close() error {
	_ = p.stdin.Close()
	select {
	case err := <-p.done:
		if err != nil {
			return fmt.Errorf("the packet holder: %w: %s", err, strings.TrimSpace(p.stderr.String()))
		}
		return nil
	case <-time.After(p.hold + 5*time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("the packet holder did not stop: killed (the kernel lets its queued packets through)")
	}
}

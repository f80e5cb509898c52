// Package helperproc starts one of nodrop's helper processes: a program
// (nodrop's binary, the suites' test binary) re-executed with a helper
// argument that makes it the helper instead of itself. The helper says it
// is ready with one line on stdout; a program that says anything else is
// not the helper (it does not know the argument) and is stopped before it
// does whatever it does.
package helperproc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// Proc is a running helper.
type Proc struct {
	Cmd *exec.Cmd
	// Stdin is the helper's stdin: closing it tells the helper to end.
	Stdin io.WriteCloser
	// Done receives the process's exit once its output is read through.
	Done   <-chan error
	stderr *strings.Builder
}

// Start runs cmd (its stdin, stdout and stderr are the helper's), waits
// at most wait for its first line to be ready, and then hands the rest of
// its output to rest (nil: it is read and dropped). what names the helper
// in errors.
func Start(ctx context.Context, cmd *exec.Cmd, what, ready string, wait time.Duration, rest func(*bufio.Reader)) (*Proc, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	p := &Proc{Cmd: cmd, Stdin: stdin, Done: done, stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr // read only once Wait has returned
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", what, cmd.Path, err)
	}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		first, _ := r.ReadString('\n')
		first = strings.TrimSpace(first)
		line <- first
		if first == ready && rest != nil {
			rest(r)
		}
		_, _ = io.Copy(io.Discard, r) // Wait only once the output is read through
		done <- cmd.Wait()
	}()
	fail := func(why error) (*Proc, error) {
		_ = cmd.Process.Kill()
		werr := <-done
		return nil, fmt.Errorf("%s (%s) %w: %v %s", what, strings.Join(cmd.Args, " "), why, werr, p.Stderr())
	}
	select {
	case first := <-line:
		if first != ready {
			return fail(fmt.Errorf("did not start (said %q)", first))
		}
		return p, nil
	case <-time.After(wait):
		return fail(fmt.Errorf("did not start within %s", wait))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// Stderr is what the helper wrote to stderr, once it has exited.
func (p *Proc) Stderr() string { return strings.TrimSpace(p.stderr.String()) }

// Package progress prints what long work is doing, with elapsed time, and
// runs external commands so that their output is shown with --verbose and
// otherwise kept for the error message when they fail.
package progress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Logger writes progress lines. A nil *Logger is silent.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	verbose bool
	// Heartbeat is how often a running step says it is still running.
	Heartbeat time.Duration
}

// New returns a Logger writing to w; verbose streams every command's output.
func New(w io.Writer, verbose bool) *Logger {
	return &Logger{w: w, verbose: verbose, Heartbeat: 30 * time.Second}
}

// Printf writes one line.
func (l *Logger) Printf(format string, args ...any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// Step is one named piece of long work.
type Step struct {
	l     *Logger
	name  string
	start time.Time
	stop  chan struct{}
	once  sync.Once
}

// Start announces a step and, until it ends, prints a heartbeat line.
func (l *Logger) Start(format string, args ...any) *Step {
	s := &Step{l: l, name: fmt.Sprintf(format, args...), start: time.Now(), stop: make(chan struct{})}
	l.Printf("• %s …", s.name)
	if l != nil && l.Heartbeat > 0 {
		go func() {
			t := time.NewTicker(l.Heartbeat)
			defer t.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-t.C:
					l.Printf("  … %s (%s so far)", s.name, s.Elapsed())
				}
			}
		}()
	}
	return s
}

// Elapsed is the time since the step started, rounded for display.
func (s *Step) Elapsed() time.Duration { return time.Since(s.start).Round(100 * time.Millisecond) }

// Done ends the step successfully, with an optional note.
func (s *Step) Done(note ...string) {
	s.end()
	extra := ""
	if len(note) > 0 {
		extra = ": " + strings.Join(note, " ")
	}
	s.l.Printf("✓ %s (%s)%s", s.name, s.Elapsed(), extra)
}

// Fail ends the step with err and returns err wrapped with the step's name.
func (s *Step) Fail(err error) error {
	s.end()
	s.l.Printf("✗ %s (%s)", s.name, s.Elapsed())
	return fmt.Errorf("%s: %w", s.name, err)
}

func (s *Step) end() { s.once.Do(func() { close(s.stop) }) }

// CommandError is a failed external command with the end of its output.
type CommandError struct {
	Args   []string
	Err    error
	Output string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	if e.Output != "" {
		msg += "\n--- last output ---\n" + e.Output
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// maxKept bounds the output kept for an error message.
const maxKept = 8 << 10

// Run runs cmd. With a verbose Logger its output streams to the log;
// otherwise the last few KiB are kept and returned in a *CommandError if
// it fails. cmd.Stdout, if already set, still receives standard output.
func (l *Logger) Run(ctx context.Context, cmd *exec.Cmd) error {
	tail := &tailBuffer{max: maxKept}
	var sink io.Writer = tail
	if l != nil && l.verbose {
		sink = io.MultiWriter(tail, lockedWriter{l})
	}
	if cmd.Stdout == nil {
		cmd.Stdout = sink
	}
	if cmd.Stderr == nil {
		cmd.Stderr = sink
	}
	if err := runContext(ctx, cmd); err != nil {
		return &CommandError{Args: cmd.Args, Err: err, Output: strings.TrimSpace(tail.String())}
	}
	return nil
}

// Output runs cmd and returns its standard output.
func (l *Logger) Output(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout = &out
	err := l.Run(ctx, cmd)
	return out.Bytes(), err
}

func runContext(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return ctx.Err()
	}
}

type lockedWriter struct{ l *Logger }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.w.Write(p)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

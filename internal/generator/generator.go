// Package generator runs nodrop's load generator as a process of its own
// inside the cluster under test: a pod of a Job (package incluster) whose
// program is nodrop's own binary (or the suites' test binary), started
// with HelperArg. Its first line on stdin says its share of the load and
// when to start it (Start); it writes every request's outcome to stdout
// as loadgen's outcome stream, which the nodrop attached to it merges
// with the other generators' (loadgen.Merge). The end of its stdin (or
// SIGTERM) ends its load as a finished one: requests in flight are judged
// and the stream's end is written.
package generator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/internal/witness"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// HelperArg, as a program's first argument, makes it a generator
// (Helper). It is no command a person types.
const HelperArg = "__nodrop-generator"

// Start is what a generator reads first from its stdin, as one line of
// JSON: its share of the load, and the moment to start sending it, the
// same for every generator of the load.
type Start struct {
	Load loadgen.Config `json:"load"`
	At   time.Time      `json:"at"`
}

// Clock is the line a generator writes as soon as it has read its
// Start, before its outcome stream: its clock at that moment, from which
// the one who wrote the Start measures how far the generator's clock is
// from its own (Offset).
type Clock struct {
	At time.Time `json:"clock"`
}

// Offset is how far a generator's clock is ahead of the reader's, and
// how far off that may be: the Start was written at sent and its Clock
// line c read at received (the reader's clock). The generator read the
// Start between the two, so its clock at c.At stood for their middle,
// give or take half the round trip.
func Offset(c Clock, sent, received time.Time) (offset, uncertainty time.Duration) {
	rtt := received.Sub(sent)
	return c.At.Sub(sent.Add(rtt / 2)), rtt / 2
}

// maxWait bounds how far ahead a Start may be.
const maxWait = time.Minute

// Helper runs the generator when args (os.Args[1:]) start with
// HelperArg, and returns its exit code and true; otherwise it does
// nothing and returns false.
func Helper(args []string) (int, bool) {
	if len(args) == 0 || args[0] != HelperArg {
		return 0, false
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return run(ctx, os.Stdin, os.Stdout, os.Stderr), true
}

// run reads the Start from stdin, sends the load from its moment until
// stdin ends (or its duration passed, or ctx ended), and writes the
// outcome stream to stdout.
func run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	in := bufio.NewReader(stdin)
	line, err := in.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		fmt.Fprintf(stderr, "%s: no load on stdin: %v\n", HelperArg, err)
		return 2
	}
	var s Start
	if err := json.Unmarshal(line, &s); err != nil {
		fmt.Fprintf(stderr, "%s: the load: %v\n", HelperArg, err)
		return 2
	}
	clock, _ := json.Marshal(Clock{At: time.Now()})
	if _, err := stdout.Write(append(clock, '\n')); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", HelperArg, err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, in) // until stdin ends: the load stops
		cancel()
	}()
	// One P, as nodrop's own load runs: the generator's threads stay
	// few, its stalls its own.
	sched.OneP()
	// A witness beside it in the pod, as beside nodrop on its host: a
	// stall the witness shared was the node's (the pods on it stood
	// still too), one it did not the generator's own.
	if self, err := os.Executable(); err == nil {
		if w, err := witness.Spawn(ctx, self); err == nil {
			defer w.Close()
			s.Load.Witness = w
		} else {
			fmt.Fprintf(stderr, "%s: no witness beside the load (its stalls will not say whose they were): %v\n", HelperArg, err)
		}
	}
	if wait := time.Until(s.At); wait > 0 {
		select {
		case <-time.After(min(wait, maxWait)):
		case <-ctx.Done():
		}
	}
	if err := loadgen.Emit(ctx, s.Load, stdout); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", HelperArg, err)
		return 1
	}
	return 0
}

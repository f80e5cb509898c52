package main

import (
	"context"
	"os"

	"github.com/nodrop-dev/nodrop/internal/flight"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/witness"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// stallWatch is what a command runs beside its load generator to say
// where the generator's stalls came from: the witness process, and with
// --stall-trace the Go execution trace around each long stall.
type stallWatch struct {
	witness *witness.Witness
	flight  *flight.Recorder
}

// startStallWatch starts the witness (this binary, as main calls
// witness.Helper) and, when traceDir is set, the flight recorder. What
// cannot start is said on log and left out: the runs are judged as
// before, their stalls just not attributed.
func startStallWatch(ctx context.Context, traceDir string, log *progress.Logger) *stallWatch {
	w := &stallWatch{}
	if self, err := os.Executable(); err == nil {
		if w.witness, err = witness.Spawn(ctx, self); err != nil {
			log.Printf("stalls will not be told apart (the generator's own or the machine's): %v", err)
		}
	}
	if traceDir != "" {
		var err error
		if w.flight, err = flight.Start(traceDir); err != nil {
			log.Printf("%v", err)
		}
	}
	return w
}

// Witness is the witness for loadgen.Config and scenario.Env (nil when
// it did not start).
func (w *stallWatch) Witness() loadgen.Witness {
	if w.witness == nil {
		return nil
	}
	return w.witness
}

// OnStall is the hook for loadgen.Config and scenario.Env.
func (w *stallWatch) OnStall() func(loadgen.Stall) {
	if w.flight == nil {
		return nil
	}
	return w.flight.Stalled
}

// Stop ends the witness and the flight recorder.
func (w *stallWatch) Stop() {
	_ = w.witness.Close()
	w.flight.Stop()
}

// Package flight keeps the last seconds of the Go execution trace in
// memory (runtime/trace's flight recorder) and writes them to a file when
// the load generator stands still, so what the runtime did around a stall
// (garbage collection, goroutines waiting to run, a thread blocked) can be
// read afterwards with `go tool trace`.
package flight

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/trace"
	"sync"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

const (
	// keep is how much of the trace is held in memory.
	keep = 3 * time.Second
	// maxBytes bounds the memory the trace may hold.
	maxBytes = 64 << 20
	// MinStall is the shortest stall worth a trace file.
	MinStall = 50 * time.Millisecond
	// maxFiles bounds the files one recorder writes.
	maxFiles = 20
	// apart is the least time between two files: one trace covers the
	// stalls that follow within it.
	apart = 5 * time.Second
)

// Recorder is a running flight recorder (Start).
type Recorder struct {
	fr  *trace.FlightRecorder
	dir string

	mu      sync.Mutex
	last    time.Time
	written int
	wg      sync.WaitGroup
}

// Start begins recording; trace files go to dir.
func Start(dir string) (*Recorder, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stall traces: %w", err)
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: keep, MaxBytes: maxBytes})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("stall traces: %w", err)
	}
	return &Recorder{fr: fr, dir: dir}, nil
}

// Stalled writes the trace around a stall of MinStall or more, in the
// background (it never blocks the caller), at most maxFiles times and
// not twice within apart.
func (r *Recorder) Stalled(s loadgen.Stall) {
	if r == nil || s.Ms < float64(MinStall.Milliseconds()) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.written >= maxFiles || time.Since(r.last) < apart {
		return
	}
	r.last = time.Now()
	r.written++
	name := filepath.Join(r.dir, fmt.Sprintf("stall-%s-%.0fms.trace", s.At.Format("150405.000"), s.Ms))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f, err := os.Create(name)
		if err != nil {
			return
		}
		defer f.Close()
		_, _ = r.fr.WriteTo(f)
	}()
}

// Stop waits for files being written and stops recording.
func (r *Recorder) Stop() {
	if r == nil {
		return
	}
	r.wg.Wait()
	r.fr.Stop()
}

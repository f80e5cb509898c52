package witness

import (
	"context"
	"time"

	"github.com/nodrop-dev/nodrop/internal/pressure"
	"github.com/nodrop-dev/nodrop/internal/procs"
)

// Quiet is what "the machine is quiet" means before a run is tried again:
// over the last For, the witness never woke late and the kernel's CPU
// pressure (the share of time in which some task waited for a CPU) stayed
// at most MaxPressure. A run not judged because the generator stood still
// waits for that, at most Max, instead of sampling the same busy spell
// again at once.
type Quiet struct {
	For         time.Duration
	MaxPressure float64
	Max         time.Duration
}

// DefaultQuiet is the bound nodrop's runs wait for.
var DefaultQuiet = Quiet{For: 5 * time.Second, MaxPressure: 0.6, Max: 90 * time.Second}

// Waited is how a wait for quiet went.
type Waited struct {
	Took  time.Duration
	Quiet bool    // false: Max passed first (the run goes on anyway)
	Last  float64 // the pressure over the last For, -1 where the kernel does not say
	// Busiest: the command names that used the most CPU over the last
	// For (internal/procs).
	Busiest []procs.Use
}

// WaitQuiet waits until the machine has been quiet (q), at most q.Max; it
// returns early only when ctx ends.
func (w *Witness) WaitQuiet(ctx context.Context, q Quiet) (Waited, error) {
	start := time.Now()
	step := time.Second
	window := int(q.For / step)
	if window < 1 {
		window = 1
	}
	var totals []time.Duration // one reading per step, newest last
	var snaps []procs.Snapshot // likewise
	t := time.NewTicker(step)
	defer t.Stop()
	for {
		p, ok := pressure.CPU()
		if ok {
			totals = append(totals, p)
		}
		snaps = append(snaps, procs.Take("/proc"))
		if len(snaps) > window+1 {
			snaps = snaps[len(snaps)-window-1:]
		}
		res := Waited{Took: time.Since(start), Last: -1}
		if len(totals) > window {
			totals = totals[len(totals)-window-1:]
			res.Last = float64(totals[len(totals)-1]-totals[0]) / float64(time.Duration(window)*step)
		}
		now := time.Now()
		calm := w.StoodStill(now.Add(-q.For), now) == 0 && time.Since(start) >= q.For
		if calm && (!ok || res.Last >= 0 && res.Last <= q.MaxPressure) {
			res.Quiet = true
		}
		if res.Quiet || res.Took >= q.Max {
			res.Busiest = procs.Busiest(snaps[0], snaps[len(snaps)-1], 5)
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-t.C:
		}
	}
}

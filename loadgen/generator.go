package loadgen

import (
	"sync"
	"time"
)

// The generator's own health. A request's deadline runs on the client, so
// a client that stands still (CPU starved on a busy machine, a GC pause)
// can time out a request the server answered in time. nodrop watches its
// own process and counts a timeout as the server's only when the client
// was on time during that request.
const (
	// stallTick is how often the watcher wakes.
	stallTick = 5 * time.Millisecond
	// StallThreshold is the smallest oversleep recorded as a stall.
	StallThreshold = 20 * time.Millisecond
	// maxStallsListed bounds Generator.Stalls; the figures stay exact.
	maxStallsListed = 1000
)

// Generator is how punctual the load generator was.
type Generator struct {
	// SendLag: how late requests were sent against their schedule
	// (waiting for the pacer, a worker or a connection slot).
	SendLag Latency `json:"send_lag"`
	// Stalls: spans of at least StallThreshold in which the generator's
	// process did not run.
	MaxStallMs   float64 `json:"max_stall_ms"`
	StallTotalMs float64 `json:"stall_total_ms"`
	StallCount   int     `json:"stall_count"`
	Stalls       []Stall `json:"stalls,omitempty"`
	// StallLimitMs: a timeout whose request saw this much stall is not
	// counted as the server's (a quarter of the request timeout).
	StallLimitMs float64 `json:"stall_limit_ms"`
	// TimeoutsDuringStalls: timeouts that are not the server's for sure.
	TimeoutsDuringStalls int `json:"timeouts_during_stalls"`
}

// Stall is a span in which the generator stood still.
type Stall struct {
	At time.Time `json:"at"`
	Ms float64   `json:"ms"`
}

// stallWatch notices when its own goroutine wakes much later than asked:
// the whole client stood still then.
type stallWatch struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	stalls []Stall // bounded; the longest are kept
	count  int
	total  time.Duration
	max    time.Duration
}

func startStallWatch() *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *stallWatch) run() {
	defer close(w.done)
	t := time.NewTicker(stallTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			now := time.Now()
			w.observe(last, now.Sub(last)-stallTick)
			last = now
		}
	}
}

// observe records an oversleep of late after a wake-up planned at from.
func (w *stallWatch) observe(from time.Time, late time.Duration) {
	if late < StallThreshold {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count++
	w.total += late
	w.max = max(w.max, late)
	s := Stall{At: from.Add(stallTick), Ms: ms(late)}
	if len(w.stalls) < maxStallsListed {
		w.stalls = append(w.stalls, s)
		return
	}
	// Keep the longest: replace the shortest listed one.
	shortest := 0
	for i, x := range w.stalls {
		if x.Ms < w.stalls[shortest].Ms {
			shortest = i
		}
	}
	if s.Ms > w.stalls[shortest].Ms {
		w.stalls[shortest] = s
	}
}

// finish stops the watch and returns what it saw.
func (w *stallWatch) finish() Generator {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return Generator{MaxStallMs: ms(w.max), StallTotalMs: ms(w.total), StallCount: w.count, Stalls: append([]Stall(nil), w.stalls...)}
}

// stalledDuring is how long the generator stood still within [from, to].
func (g *Generator) stalledDuring(from, to time.Time) time.Duration {
	var d time.Duration
	for _, s := range g.Stalls {
		end := s.At.Add(ms2d(s.Ms))
		lo, hi := maxTime(s.At, from), minTime(end, to)
		if hi.After(lo) {
			d += hi.Sub(lo)
		}
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

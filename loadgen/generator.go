package loadgen

import (
	"fmt"
	"runtime/metrics"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodrop-dev/nodrop/internal/pressure"
	"github.com/nodrop-dev/nodrop/internal/procs"
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
	// BusyPressure is the CPU pressure of a second (the share of it in
	// which some task of the machine waited for a CPU) from which
	// Generator.BusySeconds names the processes that used the CPU then.
	BusyPressure = 0.5
	// busiestListed is how many command names a Busiest list holds;
	// maxBusySeconds bounds Generator.BusySeconds.
	busiestListed  = 5
	maxBusySeconds = 600
	// procRoot is where the processes are read from.
	procRoot = "/proc"
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
	// OwnStalls and MachineStalls split StallCount by whose they were
	// (Stall.Whose), when a witness watched (Config.Witness).
	OwnStalls     int `json:"own_stalls,omitempty"`
	MachineStalls int `json:"machine_stalls,omitempty"`
	// CPU is the CPU time the generator's process used over the run, in
	// CPUs (0.25: a quarter of one).
	CPU float64 `json:"cpu"`
	// CPUPressure is the share of the run in which some task of the
	// machine waited for a CPU (/proc/pressure/cpu, some); -1 where the
	// kernel does not say. Near 1, the machine had more to run than CPUs
	// throughout: too small for this load beside what else it runs.
	CPUPressure float64 `json:"cpu_pressure"`
	// PressureBySecond is the same for each second of the run, the first
	// from its start (-1 where unknown).
	PressureBySecond []float64 `json:"cpu_pressure_by_second,omitempty"`
	// StallLimitMs: a timeout whose request saw this much stall is not
	// counted as the server's (a quarter of the request timeout).
	StallLimitMs float64 `json:"stall_limit_ms"`
	// TimeoutsDuringStalls: timeouts that are not the server's for sure.
	TimeoutsDuringStalls int `json:"timeouts_during_stalls"`
	// Busiest: the command names whose processes used the most CPU over
	// the run, as seen from the generator (on the host: every process
	// of the machine, kind's node containers included; in a pod: the
	// pod's own).
	Busiest []procs.Use `json:"busiest,omitempty"`
	// BusySeconds: each second of the run in which some task waited for
	// a CPU at least BusyPressure of it, with the busiest names then.
	BusySeconds []BusySecond `json:"busy_seconds,omitempty"`
}

// BusySecond is a second of the run in which the machine was short of
// CPU, and what used it then.
type BusySecond struct {
	At       time.Time   `json:"at"`
	Pressure float64     `json:"cpu_pressure"`
	Busiest  []procs.Use `json:"busiest"`
}

// BusiestAt is what used the CPU most in the second that holds t, when
// the machine was short of CPU then; nil otherwise.
func (g Generator) BusiestAt(t time.Time) []procs.Use {
	for _, b := range g.BusySeconds {
		if !t.Before(b.At) && t.Before(b.At.Add(time.Second)) {
			return b.Busiest
		}
	}
	return nil
}

// StallKind says whose a stall was.
type StallKind string

// Stall kinds. Own: the generator alone stood still while an independent
// process at normal priority (the witness) ran on time, so the cluster
// ran on while nodrop did not look. Machine: the witness stood still too:
// the whole machine, the pods under test included, was paused.
const (
	StallOwn     StallKind = "own"
	StallMachine StallKind = "machine"
)

// Stall is a span in which the generator stood still, and what the
// process and the machine did meanwhile.
type Stall struct {
	At time.Time `json:"at"`
	Ms float64   `json:"ms"`
	// Whose it was; empty when no witness watched.
	Whose StallKind `json:"whose,omitempty"`
	// WitnessMs: how long the witness stood still within it.
	WitnessMs float64 `json:"witness_ms,omitempty"`
	// CPUMs: CPU time the generator's process used during it (all its
	// threads). Near zero: the kernel did not run the process; near the
	// stall's length or more: the process was busy with something else
	// than its clock (its own work, the garbage collector).
	CPUMs float64 `json:"cpu_ms"`
	// GCCycles: garbage collections that ended during it.
	GCCycles uint64 `json:"gc_cycles,omitempty"`
	// Generator is which generator stood still, when several shared the
	// load (Merge).
	Generator string `json:"generator,omitempty"`
	// PressureMs: the kernel's CPU pressure (/proc/pressure/cpu, some)
	// during it: how long at least one task of the machine waited for a
	// CPU. -1 where the kernel does not say.
	PressureMs float64 `json:"cpu_pressure_ms"`
}

// PressureAt is the machine's CPU pressure in the second of the run that
// holds t, from its start; -1 where it is not known.
func (g Generator) PressureAt(started, t time.Time) float64 {
	i := int(t.Sub(started) / time.Second)
	if i < 0 || i >= len(g.PressureBySecond) {
		return -1
	}
	return g.PressureBySecond[i]
}

// whose says how many stalls were the generator's own and the machine's,
// when a witness watched.
func (g Generator) whose() string {
	if g.OwnStalls+g.MachineStalls == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d its own, %d the whole machine's)", g.OwnStalls, g.MachineStalls)
}

// Witness is an independent watcher of the machine (internal/witness): a
// process of its own at normal priority, as the pods under test run.
type Witness interface {
	// StoodStill is how long the witness stood still within [from, to].
	StoodStill(from, to time.Time) time.Duration
}

// stallWatch notices when its own goroutine wakes much later than asked:
// the whole client stood still then. Each tick it also reads what the
// process and the machine did (CPU time, garbage collections, CPU
// pressure), so a stall says which.
type stallWatch struct {
	stop    chan struct{}
	done    chan struct{}
	onStall func(Stall)

	mu       sync.Mutex
	stalls   []Stall // bounded; the longest are kept
	count    int
	total    time.Duration
	max      time.Duration
	cpuShare float64 // of one CPU, over the run
	pressure float64 // share of the run, -1 unknown
	// bySecond is the CPU pressure of each second of the run, from the
	// watch's start (-1 unknown).
	bySecond []float64
	// busiest and busySeconds: what used the CPU, over the run and in
	// its seconds of high pressure (watchProcs).
	busiest     []procs.Use
	busySeconds []BusySecond
	procsDone   chan struct{}
}

func startStallWatch(onStall func(Stall)) *stallWatch {
	w := &stallWatch{stop: make(chan struct{}), done: make(chan struct{}), procsDone: make(chan struct{}), onStall: onStall}
	go w.run()
	go w.watchProcs()
	return w
}

// watchProcs reads the machine's processes once a second, on a goroutine
// of its own so that reading them never delays the stall watch's tick,
// and keeps the busiest of each second the machine was short of CPU.
func (w *stallWatch) watchProcs() {
	defer close(w.procsDone)
	psi := pressure.Open()
	defer psi.Close()
	if psi == nil {
		return // no pressure to say when; and likely no /proc either
	}
	first := procs.Take(procRoot)
	last := first
	lastP, _ := psi.Read()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer func() {
		end := procs.Take(procRoot)
		w.mu.Lock()
		w.busiest = procs.Busiest(first, end, busiestListed)
		w.mu.Unlock()
	}()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			now := procs.Take(procRoot)
			p, ok := psi.Read()
			span := now.At.Sub(last.At)
			if ok && span > 0 {
				if share := float64(p-lastP) / float64(span); share >= BusyPressure {
					w.mu.Lock()
					if len(w.busySeconds) < maxBusySeconds {
						w.busySeconds = append(w.busySeconds, BusySecond{At: last.At, Pressure: share, Busiest: procs.Busiest(last, now, busiestListed)})
					}
					w.mu.Unlock()
				}
			}
			last, lastP = now, p
		}
	}
}

// sample is what the process and the machine had done by one tick.
type sample struct {
	at       time.Time
	cpu      time.Duration
	gc       uint64
	pressure time.Duration // -1: unknown
}

func (w *stallWatch) run() {
	defer close(w.done)
	psi := pressure.Open()
	defer psi.Close()
	gc := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	take := func() sample {
		s := sample{at: time.Now(), pressure: -1}
		var ru unix.Rusage
		if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
			s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
		metrics.Read(gc)
		if gc[0].Value.Kind() == metrics.KindUint64 {
			s.gc = gc[0].Value.Uint64()
		}
		if p, ok := psi.Read(); ok {
			s.pressure = p
		}
		return s
	}
	t := time.NewTicker(stallTick)
	defer t.Stop()
	last := take()
	first := last
	second := last // the reading at the start of the current second
	defer func() {
		// The machine's CPU pressure over the whole run, and the
		// process's CPU use.
		end := take()
		w.mu.Lock()
		defer w.mu.Unlock()
		if span := end.at.Sub(first.at); span > 0 {
			w.cpuShare = float64(end.cpu-first.cpu) / float64(span)
			w.pressure = pressureShare(first, end)
		}
	}()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			now := take()
			w.observe(last, now)
			last = now
			if now.at.Sub(second.at) >= time.Second {
				w.mu.Lock()
				w.bySecond = append(w.bySecond, pressureShare(second, now))
				w.mu.Unlock()
				second = now
			}
		}
	}
}

// pressureShare is the share of the time from a to b in which some task
// of the machine waited for a CPU; -1 where either reading is unknown.
func pressureShare(a, b sample) float64 {
	span := b.at.Sub(a.at)
	if a.pressure < 0 || b.pressure < 0 || span <= 0 {
		return -1
	}
	return float64(b.pressure-a.pressure) / float64(span)
}

// observe records an oversleep between two ticks' samples.
func (w *stallWatch) observe(prev, now sample) {
	late := now.at.Sub(prev.at) - stallTick
	if late < StallThreshold {
		return
	}
	s := Stall{At: prev.at.Add(stallTick), Ms: ms(late), CPUMs: ms(now.cpu - prev.cpu), GCCycles: now.gc - prev.gc, PressureMs: -1}
	if now.pressure >= 0 && prev.pressure >= 0 {
		s.PressureMs = ms(now.pressure - prev.pressure)
	}
	w.add(s)
	if w.onStall != nil {
		w.onStall(s)
	}
}

func (w *stallWatch) add(s Stall) {
	late := ms2d(s.Ms)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count++
	w.total += late
	w.max = max(w.max, late)
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

// finish stops the watch and returns what it saw, each stall said to be
// the generator's own or the machine's where a witness watched.
func (w *stallWatch) finish(wit Witness) Generator {
	close(w.stop)
	<-w.done
	if w.procsDone != nil {
		<-w.procsDone
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	g := Generator{MaxStallMs: ms(w.max), StallTotalMs: ms(w.total), StallCount: w.count, Stalls: append([]Stall(nil), w.stalls...),
		CPU: w.cpuShare, CPUPressure: w.pressure, PressureBySecond: append([]float64(nil), w.bySecond...),
		Busiest: w.busiest, BusySeconds: w.busySeconds}
	if wit == nil {
		return g
	}
	for i := range g.Stalls {
		s := &g.Stalls[i]
		d := wit.StoodStill(s.At, s.At.Add(ms2d(s.Ms)))
		s.WitnessMs = ms(d)
		if 2*d >= ms2d(s.Ms) {
			s.Whose = StallMachine
			g.MachineStalls++
		} else {
			s.Whose = StallOwn
			g.OwnStalls++
		}
	}
	return g
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

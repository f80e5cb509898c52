package scenario

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/loadgen"
)

func (s Scenario) calibrateFor() time.Duration {
	if s.Calibrate > 0 {
		return s.Calibrate
	}
	return CalibrateFor
}

func (s Scenario) tailFor() time.Duration {
	if s.Tail > 0 {
		return s.Tail
	}
	return TailFor
}

// Calibrate runs exactly the load a run will judge, every part of it at
// once, for d with nothing happening. Each part must be judged lossless
// by the same rule as the run (every request answered, the rate
// delivered with no gap, the generator on time), or the set-up is broken
// (wrong port, pods not serving, a saturated load generator) and nothing
// is judged: the error wraps ErrNotJudged.
func Calibrate(ctx context.Context, d time.Duration, log *progress.Logger, send SendFunc, cfgs ...loadgen.Config) ([]*loadgen.Report, error) {
	step := log.Start("calibrating for %s: the same load with nothing happening must be delivered and lose nothing", d)
	reports := make([]*loadgen.Report, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		cfg.Duration = d
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = send(ctx, cfg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return reports, step.Fail(err)
	}
	for _, r := range reports {
		if r.Verdict != loadgen.Lossless {
			var b strings.Builder
			r.WriteTable(&b)
			return reports, step.Fail(notJudged{fmt.Errorf("setup broken before any disruption, so nothing was judged: calibration was %s (%s)\n%s", r.Verdict, r.Summary(), b.String())})
		}
	}
	g := reports[0].Generator
	if g.CPUPressure >= MaxCalibrationPressure {
		return reports, step.Fail(notJudged{fmt.Errorf("%w: with nothing happening, some task waited for a CPU %.0f%% of the calibration (nodrop used %.0f%% of a CPU at %d rps%s); a rollout on top of it would starve the pods or the generator, so nothing was judged: run at a lower rate, or on a larger machine, or stop what else keeps it busy",
			errMachineBusy, 100*g.CPUPressure, 100*g.CPU, reports[0].RateTarget, busiest("; the busiest processes: ", g.Busiest))})
	}
	if g.CPUPressure >= 0 {
		step.Done(fmt.Sprintf("machine CPU pressure %.0f%%, nodrop %.0f%% of a CPU%s", 100*g.CPUPressure, 100*g.CPU, busiest("; the busiest: ", g.Busiest)))
	} else {
		step.Done()
	}
	return reports, nil
}

// errMachineBusy marks a calibration refused for the machine's CPU
// pressure (Scenario.MinRate).
var errMachineBusy = errors.New("the machine is too small for this load")

// MaxCalibrationPressure is the CPU pressure (the share of the time in
// which some task of the machine waited for a CPU) above which the load
// alone, with nothing happening, is more than the machine holds. On two
// cores beside nodrop's kind cluster, 1,000 rps of fresh connections ran
// at 0–6 % (docs/stalls.md).
const MaxCalibrationPressure = 0.8

// background is load running in the background of a run.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
	report *loadgen.Report
	err    error
	count  chan int
	last   int
}

// SendFunc sends one load until ctx ends or its duration passed:
// loadgen.Run, or a Sender's.
type SendFunc func(ctx context.Context, cfg loadgen.Config) (*loadgen.Report, error)

// send is how the run sends its loads: from this process, or from the
// Env's generators in the run's namespace.
func (r *run) send() SendFunc {
	if g := r.env.Generators; g != nil {
		return func(ctx context.Context, cfg loadgen.Config) (*loadgen.Report, error) { return g.Send(ctx, r.ns, cfg) }
	}
	return loadgen.Run
}

// startLoad starts cfg's load until Stop (or ctx's end).
func startLoad(ctx context.Context, send SendFunc, cfg loadgen.Config) *background {
	loadCtx, cancel := context.WithCancel(ctx)
	l := &background{cancel: cancel, done: make(chan struct{}), count: make(chan int, 1)}
	cfg.Progress = func(p loadgen.Progress) {
		select {
		case <-l.count:
		default:
		}
		l.count <- p.Sent
	}
	go func() {
		defer close(l.done)
		l.report, l.err = send(loadCtx, cfg)
	}()
	return l
}

// Sent is the latest count of sent requests.
func (l *background) Sent() int {
	select {
	case n := <-l.count:
		l.last = n
	default:
	}
	return l.last
}

// WaitSent waits until at least n requests were sent (progress of the
// load itself, not a sleep), the load ended, or ctx is done.
func (l *background) WaitSent(ctx context.Context, n int) {
	for l.last < n {
		select {
		case l.last = <-l.count:
		case <-l.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Stop ends the load and returns its report.
func (l *background) Stop() (*loadgen.Report, error) {
	l.cancel()
	<-l.done
	return l.report, l.err
}

// LoadCost is how many load slots a run takes (Env.LoadSlots): one for
// each 1,000 rps of kept-alive load, two for fresh connections (one per
// request) and two for a hop through the ingress controller; the sum
// over the run's loads, rounded up, at least one. Measured on two cores
// with LOAD_SLOTS=2 in mind: a kept-alive run at 1,000 rps keeps ≈ 0.55
// core busy with the cluster's share of it, a fresh one ≈ 0.8 core (the
// handshakes, NAT and conntrack entries); two kept-alive runs at once
// kept every verdict, two fresh ones starved the load generator.
func (s Scenario) LoadCost() int {
	cost := 0.0
	for _, t := range s.Traffic {
		c := float64(max(t.Config.Rate, 1)) / 1000
		if t.Load.Fresh && t.Load.Connections == 0 {
			c *= 2
		}
		if s.Target.Ingress {
			c *= 2
		}
		cost += c
	}
	return max(1, int(math.Ceil(cost-1e-9)))
}

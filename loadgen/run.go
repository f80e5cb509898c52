package loadgen

import (
	"context"
	"net/http"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// initialWorkers is how many workers vegeta starts with; it adds more, up
// to MaxWorkers, when they are all busy.
const initialWorkers = 32

// Run sends constant-rate load until cfg.Duration has passed or ctx is
// cancelled, waits for requests in flight (at most cfg.Timeout), and
// judges every request. The error is non-nil only for a bad Config.
//
// Sending and counting are apart: each load mode only turns requests
// into outcomes on a channel, and one accumulator counts them.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.Normalize()
	if err != nil {
		return nil, err
	}
	watch := startStallWatch(cfg.OnStall)
	started := time.Now()
	outcomes, counts := send(ctx, cfg, started)
	acc := newAccumulator(cfg, started)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case o, ok := <-outcomes:
			if !ok {
				if counts != nil {
					counts.fill(acc.r)
				}
				acc.r.Interrupted = interrupted(ctx, cfg, started)
				return acc.report(watch.finish(cfg.Witness)), nil
			}
			acc.add(o)
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{Elapsed: time.Since(started), Sent: acc.r.Total, Lost: acc.r.Lost})
			}
		}
	}
}

// send starts the load cfg asks for, for cfg.Duration (0: until ctx
// ends, at most MaxDuration): long-lived connections or paced requests.
// Its outcomes come on the channel, closed once the last request is
// judged; counts (long-lived load only, else nil) hold what became of the
// connections once it is closed.
func send(ctx context.Context, cfg Config, started time.Time) (outcomes <-chan outcome, counts *connStats) {
	duration := cfg.Duration
	if duration == 0 {
		duration = MaxDuration
	}
	if cfg.Connections > 0 {
		return sendLongLived(ctx, cfg, started, duration)
	}
	return sendPaced(ctx, cfg, started, duration), nil
}

// interrupted says a load that began at started was cancelled (ctx)
// before its planned end: it cannot stand for the run asked for.
func interrupted(ctx context.Context, cfg Config, started time.Time) bool {
	return cfg.Duration > 0 && ctx.Err() != nil && time.Since(started) < cfg.Duration
}

// sendPaced is open-loop load through vegeta's attacker: requests leave
// on the pacer's schedule whatever the server does, each judged with what
// nodrop's transport saw of it.
func sendPaced(ctx context.Context, cfg Config, started time.Time, duration time.Duration) <-chan outcome {
	tr := newTracker(cfg)
	client := &http.Client{
		Transport: tr, // the tracker enforces cfg.Timeout itself
		// A redirect is an answer; following it would hide where it came from.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	atk := vegeta.NewAttacker(
		vegeta.Client(client),
		vegeta.Workers(min(cfg.MaxWorkers, initialWorkers)),
		vegeta.MaxWorkers(cfg.MaxWorkers),
		vegeta.MaxBody(0), // bodies are read to the end and dropped, not kept
	)
	targets := make([]vegeta.Target, len(cfg.Targets))
	for i, u := range cfg.Targets {
		targets[i] = vegeta.Target{Method: cfg.Method, URL: u, Body: cfg.Body, Header: cfg.Header}
	}
	interval := time.Second / time.Duration(cfg.Rate)
	out := make(chan outcome, 1024)
	results := atk.Attack(vegeta.NewStaticTargeter(targets...), vegeta.ConstantPacer{Freq: cfg.Rate, Per: time.Second}, duration, "nodrop")
	go func() {
		defer close(out)
		defer tr.base.CloseIdleConnections()
		stop := ctx.Done()
		for {
			select {
			case res, ok := <-results:
				if !ok {
					return
				}
				// vegeta's constant pacer schedules request n (from 0)
				// n+1 intervals after the start.
				due := started.Add(time.Duration(res.Seq+1) * interval)
				out <- judge(res, tr.take(res.Seq), !cfg.Lenient, due)
			case <-stop:
				// Stop sending; requests in flight still finish and are judged.
				atk.Stop()
				stop = nil
			}
		}
	}()
	return out
}

package loadgen

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// initialWorkers is how many workers vegeta starts with; it adds more, up
// to MaxWorkers, when they are all busy.
const initialWorkers = 32

// Run sends constant-rate load until cfg.Duration has passed or ctx is
// cancelled, waits for requests in flight (at most cfg.Timeout), and
// judges every request. The error is non-nil only for a bad Config.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.Normalize()
	if err != nil {
		return nil, err
	}
	if cfg.Connections > 0 {
		return runLongLived(ctx, cfg)
	}
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
	duration := cfg.Duration
	if duration == 0 {
		duration = MaxDuration
	}

	acc := newAccumulator(cfg, time.Now())
	results := atk.Attack(vegeta.NewStaticTargeter(targets...), vegeta.ConstantPacer{Freq: cfg.Rate, Per: time.Second}, duration, "nodrop")
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	stop := ctx.Done()
	defer tr.base.CloseIdleConnections()
	for {
		select {
		case res, ok := <-results:
			if !ok {
				return acc.report(), nil
			}
			acc.add(judge(res, tr.take(res.Seq), acc.r.Strict))
		case <-stop:
			// Stop sending; requests in flight still finish and are judged.
			atk.Stop()
			stop = nil
		case <-tick.C:
			if cfg.Progress != nil {
				cfg.Progress(Progress{Elapsed: time.Since(acc.r.Started), Sent: acc.r.Total, Lost: acc.r.Lost})
			}
		}
	}
}

// sample is what the accumulator keeps of every request.
type sample struct {
	seq     uint64
	at      time.Time
	latency time.Duration
	lost    bool
}

type accumulator struct {
	r       *Report
	samples []sample
}

func newAccumulator(cfg Config, started time.Time) *accumulator {
	r := &Report{
		Targets:     cfg.Targets,
		Method:      cfg.Method,
		KeepAlive:   !cfg.DisableKeepAlive,
		Strict:      !cfg.Lenient,
		RateTarget:  cfg.Rate,
		Started:     started,
		LostByClass: make(map[Class]int, len(LossClasses)),
		ByPod:       map[string]int{},
		ByVersion:   map[string]int{},
		Losses:      []Loss{},
	}
	for _, c := range LossClasses {
		r.LostByClass[c] = 0
	}
	return &accumulator{r: r}
}

// outcome is one judged request, whichever client sent it.
type outcome struct {
	seq        uint64
	at         time.Time
	latency    time.Duration
	class      Class
	err        error
	status     int
	target     string
	pod        string
	version    string
	conn       int // long-lived mode: which connection, from 1
	reused     bool
	firstByte  bool
	retried    bool
	retryCount bool // lenient mode: count it in Report.Retried
}

// judge classifies one vegeta result using what the transport saw.
func judge(res *vegeta.Result, a *attempt, strict bool) outcome {
	o := outcome{
		seq: res.Seq, at: res.Timestamp, latency: res.Latency, status: int(res.Code), target: res.URL,
		pod: res.Headers.Get(PodHeader), version: res.Headers.Get(VersionHeader),
	}
	if a != nil {
		o.reused, o.firstByte, o.retried = a.reused, a.firstByte, a.retried()
		o.retryCount = o.retried && !strict
	}
	switch {
	case a == nil:
		// The request never reached the transport (a target error).
		if res.Error != "" && res.Code == 0 {
			o.class, o.err = classifyMessage(res.Error), errorString(res.Error)
			return o
		}
	case a.err != nil:
		o.err = a.cause()
		o.class = Classify(o.err, 0)
		return o
	case strict && a.retried():
		// Guard: strict requests are not replayable, so net/http should
		// never retry them; if it did, the first attempt was still lost.
		o.err = a.retryCause()
		o.class = Classify(o.err, 0)
		return o
	case res.Code == 0 && res.Error != "":
		// The transport saw no error but vegeta did: only its text is left.
		o.class, o.err = classifyMessage(res.Error), errorString(res.Error)
		return o
	}
	o.class = Classify(nil, int(res.Code))
	return o
}

type errorString string

func (e errorString) Error() string { return string(e) }

func (acc *accumulator) add(o outcome) {
	r := acc.r
	lost := o.class != OK
	r.Total++
	acc.samples = append(acc.samples, sample{seq: o.seq, at: o.at, latency: o.latency, lost: lost})

	idx := max(0, int(o.at.Sub(r.Started)/BucketWidth))
	for len(r.Timeline) <= idx {
		r.Timeline = append(r.Timeline, Bucket{OffsetMs: int64(len(r.Timeline)) * BucketWidth.Milliseconds()})
	}
	b := &r.Timeline[idx]
	b.Sent++
	if o.retryCount {
		r.Retried++
	}
	if !lost {
		r.OK++
		b.OK++
		if o.pod != "" {
			r.ByPod[o.pod]++
		}
		if o.version != "" {
			r.ByVersion[o.version]++
		}
		return
	}

	r.Lost++
	r.LostByClass[o.class]++
	b.Lost++
	if b.LostByClass == nil {
		b.LostByClass = map[Class]int{}
	}
	b.LostByClass[o.class]++
	if r.FirstLoss == nil || o.at.Before(*r.FirstLoss) {
		t := o.at
		r.FirstLoss = &t
	}
	if r.LastLoss == nil || o.at.After(*r.LastLoss) {
		t := o.at
		r.LastLoss = &t
	}
	l := Loss{
		Seq:             o.seq,
		At:              o.at,
		LatencyMs:       ms(o.latency),
		Class:           o.class,
		Status:          o.status,
		Target:          o.target,
		Pod:             o.pod,
		Conn:            o.conn,
		ConnReused:      o.reused,
		GotResponseByte: o.firstByte,
		Retried:         o.retried,
		IdleCloseRace:   o.reused && !o.firstByte && (o.class == EOF || o.class == Reset),
	}
	if o.err != nil {
		l.Error = o.err.Error()
	}
	if l.IdleCloseRace {
		r.IdleCloseRace++
	}
	if len(r.Losses) < MaxLossDetails {
		r.Losses = append(r.Losses, l)
	} else {
		r.LossesTruncated = true
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report finishes the aggregates that need every sample.
func (acc *accumulator) report() *Report {
	r := acc.r
	s := acc.samples
	if len(s) == 0 {
		return r
	}
	slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.seq, b.seq) })
	slices.SortFunc(r.Losses, func(a, b Loss) int { return cmp.Compare(a.Seq, b.Seq) })

	first, last := s[0].at, s[len(s)-1].at
	var end time.Time
	for _, x := range s {
		end = maxTime(end, x.at.Add(x.latency))
	}
	r.DurationSec = end.Sub(r.Started).Seconds()
	if span := last.Sub(first).Seconds(); len(s) > 1 && span > 0 {
		r.RateAchieved = float64(len(s)-1) / span
	}

	var run, best Window
	for _, x := range s {
		if !x.lost {
			run = Window{}
			continue
		}
		if run.Requests == 0 {
			run.Start = x.at
		}
		run.End = maxTime(run.End, x.at.Add(x.latency))
		run.Requests++
		if run.Requests > best.Requests {
			best = run
		}
	}
	if best.Requests > 0 {
		r.LongestOutage = &best
	}

	lat := make([]time.Duration, len(s))
	var sum time.Duration
	for i, x := range s {
		lat[i] = x.latency
		sum += x.latency
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return ms(lat[min(len(lat)-1, int(p*float64(len(lat))))]) }
	r.Latency = Latency{P50: pct(0.50), P90: pct(0.90), P99: pct(0.99), Max: ms(lat[len(lat)-1]), Mean: ms(sum / time.Duration(len(lat)))}
	return r
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Source is one generator's outcome stream (Emit's), and the name its
// part of the load goes by in reports (a generator pod's, with its node).
type Source struct {
	Name string
	// Node is the machine it ran on, where that is known (a generator
	// pod's node): the advice tells the losses of one node's clients.
	Node string
	R    io.Reader
	// ClockOffset is how far the generator's clock was ahead of this
	// process's (negative: behind), as measured by whoever reads the
	// stream; its times are moved back by it so that every generator's
	// requests and this process's events share one timeline.
	// ClockUncertainty is how far off that measure may be.
	ClockOffset, ClockUncertainty time.Duration
}

// Share is one generator's part of a load several generators shared
// (Merge): what it was asked to send, what it sent and lost, and, when
// its part cannot stand for its share of the load, why.
type Share struct {
	Name         string    `json:"name"`
	Node         string    `json:"node,omitempty"`
	RateTarget   int       `json:"rate_target"`
	Started      time.Time `json:"started"`
	Sent         int       `json:"sent"`
	Lost         int       `json:"lost"`
	RateAchieved float64   `json:"rate_achieved"`
	StallCount   int       `json:"stall_count"`
	MaxStallMs   float64   `json:"max_stall_ms"`
	// ClockOffsetMs is how far its clock was ahead of nodrop's, give or
	// take ClockUncertaintyMs (Source); its times are on nodrop's clock.
	ClockOffsetMs      float64 `json:"clock_offset_ms"`
	ClockUncertaintyMs float64 `json:"clock_uncertainty_ms"`
	// Problem: why this generator's part does not stand for its share
	// (its stream was cut or unreadable, it was interrupted, or it sent
	// less than its rate); a merged load with one is not judged.
	Problem string `json:"problem,omitempty"`
}

// Merge reads the outcome streams of generators that shared one load
// and counts their requests in one Report, as Run does those of one
// process. The merged load is what the streams say they sent: the first
// one's kind of load, at the sum of their rates, to all their targets;
// what it achieved is the sum of what each achieved over its own span
// (generators that start some milliseconds apart sent their rates all
// the same).
// Each lost request names its generator (Loss.Generator), each stall
// too (Stall.Generator), and each generator's part is in
// Report.Generators. A generator whose stream did not end as a finished
// load's does, or that sent less than its rate, makes the merged load not
// judged, and says which. Merge returns once every stream has ended;
// ending ctx stops nothing (the caller closes the streams) but marks the
// load interrupted. progress, when set, is called about four times a
// second. The error is non-nil only when there is no stream.
func Merge(ctx context.Context, sources []Source, progress func(Progress)) (*Report, error) {
	if len(sources) == 0 {
		return nil, fmt.Errorf("%w: no generator to merge", ErrInvalidConfig)
	}
	events := make(chan wireEvent, 1024)
	for i, s := range sources {
		go readStream(i, s.R, events)
	}
	m := merger{n: len(sources), parts: make([]part, len(sources))}
	for i, s := range sources {
		p := &m.parts[i]
		p.Name, p.Node, p.offset = s.Name, s.Node, s.ClockOffset
		p.ClockOffsetMs, p.ClockUncertaintyMs = ms(s.ClockOffset), ms(s.ClockUncertainty)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for done := 0; done < len(sources); {
		select {
		case e := <-events:
			if m.take(e) {
				done++
			}
		case <-tick.C:
			if progress != nil && m.acc != nil {
				progress(Progress{Elapsed: time.Since(m.acc.r.Started), Sent: m.acc.r.Total, Lost: m.acc.r.Lost})
			}
		}
	}
	return m.report(ctx.Err() != nil), nil
}

// wireEvent is what a stream's reader saw: its start, an outcome, its
// end, or that it is over (err: why it ended without its end).
type wireEvent struct {
	source int
	f      frame
	over   bool
	err    error
}

// readStream decodes one stream onto events, then says it is over.
func readStream(i int, r io.Reader, events chan<- wireEvent) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	started := false
	for {
		var f frame
		err := dec.Decode(&f)
		switch {
		case errors.Is(err, io.EOF):
			events <- wireEvent{source: i, over: true}
			return
		case err != nil:
			events <- wireEvent{source: i, over: true, err: fmt.Errorf("unreadable outcome stream: %w", err)}
			return
		case !started && (f.Start == nil || f.Start.Version != WireVersion):
			events <- wireEvent{source: i, over: true, err: fmt.Errorf("not an outcome stream of version %d (a nodrop of another version?)", WireVersion)}
			return
		}
		started = true
		events <- wireEvent{source: i, f: f}
	}
}

// part is one generator's stream as the merge reads it.
type part struct {
	Share
	offset      time.Duration // its clock ahead of this process's
	start       *wireStart
	end         *wireEnd
	first, last time.Time
	problem     error
}

// merger counts the streams' outcomes in one accumulator, made once
// every stream has started (or ended without starting): the merged load
// starts with the first of them. Outcomes that come before wait.
type merger struct {
	n       int
	parts   []part
	acc     *accumulator
	waiting []outcome
}

// take handles one event and says whether its stream is over.
func (m *merger) take(e wireEvent) bool {
	p := &m.parts[e.source]
	switch {
	case e.over:
		p.problem = e.err
		if p.problem == nil && p.end == nil {
			p.problem = errors.New("its outcome stream ended before its load did (the generator was stopped or its log cut)")
		}
		if p.start == nil {
			p.start = &wireStart{} // never started: nothing to wait for
		}
		m.open()
		return true
	case e.f.Start != nil:
		e.f.Start.Started = e.f.Start.Started.Add(-p.offset) // on this process's clock
		p.start, p.Started, p.RateTarget = e.f.Start, e.f.Start.Started, e.f.Start.Load.Rate
		m.open()
	case e.f.O != nil:
		o := e.f.O.outcome(p.start.Started, p.start.Load.Targets)
		// One sequence across the generators, interleaved: the n-th
		// request of each was due at about the same moment.
		o.seq = o.seq*uint64(m.n) + uint64(e.source)
		o.generator = p.Name
		p.Sent++
		if o.class != OK {
			p.Lost++
		}
		if p.first.IsZero() || o.at.Before(p.first) {
			p.first = o.at
		}
		p.last = maxTime(p.last, o.at)
		if m.acc == nil {
			m.waiting = append(m.waiting, o)
		} else {
			m.acc.add(o)
		}
	case e.f.End != nil:
		p.end = e.f.End
	}
	return false
}

// open makes the accumulator once every stream has started or ended:
// the merged load starts with the first generator and is the first
// stream's kind of load at the sum of the rates, to every target.
func (m *merger) open() {
	if m.acc != nil {
		return
	}
	var started time.Time
	var cfg Config
	for _, p := range m.parts {
		if p.start == nil {
			return
		}
		if s := p.start.Started; !s.IsZero() && (started.IsZero() || s.Before(started)) {
			started = s
		}
		if p.start.Version == 0 {
			continue // never started
		}
		l := p.start.Load
		if cfg.Rate == 0 {
			cfg = l
			cfg.Targets, cfg.Rate = nil, 0
		}
		cfg.Rate += l.Rate
		cfg.Duration = max(cfg.Duration, l.Duration)
		for _, t := range l.Targets {
			if !slices.Contains(cfg.Targets, t) {
				cfg.Targets = append(cfg.Targets, t)
			}
		}
	}
	if started.IsZero() {
		started = time.Now()
	}
	m.acc = newAccumulator(cfg, started)
	for _, o := range m.waiting {
		m.acc.add(o)
	}
	m.waiting = nil
}

// report is the merged Report, judged with every generator's part.
func (m *merger) report(interrupted bool) *Report {
	m.open()
	r := m.acc.r
	gen := Generator{CPUPressure: -1}
	for i := range m.parts {
		p := &m.parts[i]
		p.judge()
		if e := p.end; e != nil {
			r.Reconnects += e.Reconnects
			r.BrokenConnections += e.Broken
			for _, g := range e.GoAways {
				if len(r.GoAways) < MaxGoAways {
					// On this process's clock, as the outcomes are.
					g.At, g.Generator = g.At.Add(-p.offset), p.Name
					r.GoAways = append(r.GoAways, g)
				}
			}
			if r.Streams > 0 {
				r.StreamsOpened += e.StreamsOpened
				r.StreamsEndedByServer += e.StreamsEnded
				r.StreamsHeld += e.StreamsHeld
			}
			gen.add(e.Generator, p.Name, p.offset, int(p.Started.Sub(r.Started)/time.Second))
			p.StallCount, p.MaxStallMs = e.Generator.StallCount, e.Generator.MaxStallMs
		}
		r.Generators = append(r.Generators, p.Share)
	}
	slices.SortStableFunc(r.GoAways, func(a, b GoAway) int { return a.At.Compare(b.At) })
	r.Interrupted = interrupted
	m.acc.achieved = func() float64 {
		sum := 0.0
		for _, p := range m.parts {
			sum += p.RateAchieved
		}
		return sum
	}
	return m.acc.report(gen)
}

// judge says what keeps this part from standing for its share.
func (p *part) judge() {
	if span := p.last.Sub(p.first).Seconds(); p.Sent > 1 && span > 0 {
		p.RateAchieved = float64(p.Sent-1) / span
	}
	switch {
	case p.problem != nil:
		p.Problem = p.problem.Error()
	case p.end.Interrupted:
		p.Problem = "interrupted before its planned end"
	case p.Sent == 0:
		p.Problem = "sent no request"
	case p.RateTarget > 0 && p.RateAchieved < MinRateRatio*float64(p.RateTarget):
		p.Problem = fmt.Sprintf("sent %.0f requests a second of its %d", p.RateAchieved, p.RateTarget)
	}
}

// add counts one generator's watch in g (name, its clock ahead by
// clock, started offset seconds after the merged load): its stalls named
// and on this process's clock, the machine's CPU pressure the worst of
// the generators' each second.
func (g *Generator) add(o Generator, name string, clock time.Duration, offset int) {
	for _, s := range o.Stalls {
		s.Generator, s.At = name, s.At.Add(-clock)
		g.Stalls = append(g.Stalls, s)
	}
	g.StallCount += o.StallCount
	g.StallTotalMs += o.StallTotalMs
	g.MaxStallMs = max(g.MaxStallMs, o.MaxStallMs)
	g.OwnStalls += o.OwnStalls
	g.MachineStalls += o.MachineStalls
	g.CPU += o.CPU
	if o.CPUPressure > g.CPUPressure || g.Busiest == nil {
		g.Busiest = o.Busiest // what the most starved generator saw
	}
	g.CPUPressure = max(g.CPUPressure, o.CPUPressure)
	for _, b := range o.BusySeconds {
		b.At = b.At.Add(-clock)
		g.BusySeconds = append(g.BusySeconds, b)
	}
	for i, v := range o.PressureBySecond {
		j := i + max(0, offset)
		for len(g.PressureBySecond) <= j {
			g.PressureBySecond = append(g.PressureBySecond, -1)
		}
		g.PressureBySecond[j] = max(g.PressureBySecond[j], v)
	}
}

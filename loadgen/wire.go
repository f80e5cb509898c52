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

// The outcome stream: how a generator that runs elsewhere (a pod of the
// cluster under test) hands every request's outcome to the nodrop that
// judges, so that one accumulator counts the requests of all its
// generators as if it had sent them. One JSON object per line: a start,
// an outcome per request as it is judged, and an end that carries what
// only the generator knows at its end (its connections' counts, its
// stall watch). A stream without its end was cut: its generator did not
// finish its share, and the merged run is not judged.

// WireVersion is the version of the outcome stream Emit writes and
// Merge reads; Merge refuses another.
const WireVersion = 1

// frame is one line of the stream: exactly one field is set.
type frame struct {
	Start *wireStart   `json:"start,omitempty"`
	O     *wireOutcome `json:"o,omitempty"`
	End   *wireEnd     `json:"end,omitempty"`
}

// wireStart opens a stream: when the generator started and the load
// it sends (normalized).
type wireStart struct {
	Version int       `json:"version"`
	Started time.Time `json:"started"`
	Load    Config    `json:"load"`
}

// wireOutcome is one request's outcome; times are nanoseconds after the
// stream's start (0: unknown) and durations nanoseconds.
type wireOutcome struct {
	Seq     uint64    `json:"s"`
	At      int64     `json:"t"`
	Latency int64     `json:"l"`
	SendLag int64     `json:"g,omitempty"`
	Class   Class     `json:"c,omitempty"`
	Error   string    `json:"e,omitempty"`
	Status  int       `json:"h,omitempty"`
	Target  int       `json:"u,omitempty"` // index in the start's targets
	Pod     string    `json:"p,omitempty"`
	Version string    `json:"v,omitempty"`
	Conn    int       `json:"n,omitempty"`
	Flags   wireFlags `json:"f,omitempty"`
	IdleFor int64     `json:"i,omitempty"`
	OnConn  int64     `json:"oc,omitempty"`
	Failed  int64     `json:"fa,omitempty"`
	Port    int       `json:"lp,omitempty"`
	H2Conn  int       `json:"h2,omitempty"`
}

// wireFlags are an outcome's booleans, a bit each.
type wireFlags uint16

const (
	flagReused wireFlags = 1 << iota
	flagIdle
	flagFirstByte
	flagRetried
	flagRetryCount
	flagGoAwayRace
	flagNoConn
)

// wireEnd closes a stream.
type wireEnd struct {
	Interrupted   bool      `json:"interrupted,omitempty"`
	Reconnects    int       `json:"reconnects,omitempty"`
	Broken        int       `json:"broken,omitempty"`
	StreamsOpened int       `json:"streams_opened,omitempty"`
	StreamsEnded  int       `json:"streams_ended,omitempty"`
	StreamsHeld   int       `json:"streams_held,omitempty"`
	GoAways       []GoAway  `json:"goaways,omitempty"`
	Generator     Generator `json:"generator"`
}

// toWire is o as a line of the stream that began at started.
func toWire(o outcome, started time.Time, targets []string) *wireOutcome {
	since := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return int64(t.Sub(started))
	}
	w := &wireOutcome{
		Seq: o.seq, At: since(o.at), Latency: int64(o.latency), SendLag: int64(o.sendLag),
		Class: o.class, Status: o.status, Pod: o.pod, Version: o.version, Conn: o.conn,
		IdleFor: int64(o.idleFor), OnConn: since(o.onConnAt), Failed: since(o.failedAt), Port: o.localPort,
		H2Conn: o.h2conn, Target: max(0, slices.Index(targets, o.target)),
	}
	if o.err != nil {
		w.Error = o.err.Error()
	}
	for _, f := range []struct {
		on   bool
		flag wireFlags
	}{{o.reused, flagReused}, {o.idle, flagIdle}, {o.firstByte, flagFirstByte}, {o.retried, flagRetried},
		{o.retryCount, flagRetryCount}, {o.goAwayRace, flagGoAwayRace}, {o.noConn, flagNoConn}} {
		if f.on {
			w.Flags |= f.flag
		}
	}
	return w
}

// outcome is w as the accumulator takes it, for the stream that began
// at started with targets.
func (w *wireOutcome) outcome(started time.Time, targets []string) outcome {
	at := func(ns int64) time.Time {
		if ns == 0 {
			return time.Time{}
		}
		return started.Add(time.Duration(ns))
	}
	o := outcome{
		seq: w.Seq, at: started.Add(time.Duration(w.At)), latency: time.Duration(w.Latency), sendLag: time.Duration(w.SendLag),
		class: w.Class, status: w.Status, pod: w.Pod, version: w.Version, conn: w.Conn,
		idleFor: time.Duration(w.IdleFor), onConnAt: at(w.OnConn), failedAt: at(w.Failed), localPort: w.Port, h2conn: w.H2Conn,
		reused: w.Flags&flagReused != 0, idle: w.Flags&flagIdle != 0, firstByte: w.Flags&flagFirstByte != 0,
		retried: w.Flags&flagRetried != 0, retryCount: w.Flags&flagRetryCount != 0,
		goAwayRace: w.Flags&flagGoAwayRace != 0, noConn: w.Flags&flagNoConn != 0,
	}
	if w.Target >= 0 && w.Target < len(targets) {
		o.target = targets[w.Target]
	}
	if w.Error != "" {
		o.err = errors.New(w.Error)
	}
	return o
}

// emitFlush is how often Emit flushes the lines it has written: the
// merging side sees outcomes at most this late.
const emitFlush = 100 * time.Millisecond

// Emit sends the load cfg asks for, as Run does, and writes each
// request's outcome to w as it is judged instead of counting it (the
// outcome stream above), then the end. Merge reads such streams from
// several generators into one Report. It returns once the load is done
// (cfg.Duration, or ctx ended: the end then says interrupted); an error
// for a bad Config, or when w failed (the load is then stopped).
func Emit(ctx context.Context, cfg Config, w io.Writer) error {
	cfg, err := cfg.Normalize()
	if err != nil {
		return err
	}
	sendCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := startStallWatch(cfg.OnStall)
	started := time.Now()
	outcomes, counts := send(sendCtx, cfg, started)
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	werr := enc.Encode(frame{Start: &wireStart{Version: WireVersion, Started: started, Load: cfg}})
	tick := time.NewTicker(emitFlush)
	defer tick.Stop()
	for open := true; open; {
		select {
		case o, ok := <-outcomes:
			if !ok {
				open = false
				break
			}
			if werr == nil {
				werr = enc.Encode(frame{O: toWire(o, started, cfg.Targets)})
			}
		case <-tick.C:
			if werr == nil {
				werr = bw.Flush()
			}
		}
		if werr != nil {
			cancel() // nobody reads: stop sending, drain what is in flight
		}
	}
	gen := watch.finish(cfg.Witness)
	if werr != nil {
		return fmt.Errorf("writing the outcome stream: %w", werr)
	}
	end := &wireEnd{Generator: gen, Interrupted: interrupted(ctx, cfg, started)}
	if counts != nil {
		end.Reconnects, end.Broken = int(counts.reconnects.Load()), int(counts.broken.Load())
		end.StreamsOpened, end.StreamsEnded, end.StreamsHeld = int(counts.streamsOpened.Load()), int(counts.streamsEnded.Load()), int(counts.streamsHeld.Load())
		end.GoAways = counts.goAwayList()
	}
	if err := enc.Encode(frame{End: end}); err != nil {
		return fmt.Errorf("writing the outcome stream: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the outcome stream: %w", err)
	}
	return nil
}

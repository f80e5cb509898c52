package loadgen

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// sendLongLived is long-lived load: cfg.Connections connections of the
// targets' protocol, each sending back to back (paced so all together send
// at most cfg.Rate per second) for the whole run. A connection that breaks
// loses what it had on the wire and is dialled again, and both are
// counted; one the server closes politely (HTTP Connection: close, or a
// close seen while the connection was idle) counts as a reconnect, not a
// loss.
func sendLongLived(ctx context.Context, cfg Config, started time.Time, duration time.Duration) (<-chan outcome, *connStats) {
	return sendLongLivedWith(ctx, cfg, started, duration, nil)
}

// sendLongLivedWith is sendLongLived with a hook for tests: beforeSend
// runs between taking a connection and sending on it. The counts are
// whole once the channel is closed.
func sendLongLivedWith(ctx context.Context, cfg Config, started time.Time, duration time.Duration, beforeSend func(wireConn)) (<-chan outcome, *connStats) {
	sendCtx, stopSending := context.WithTimeout(ctx, duration)
	ll := &longLived{cfg: cfg, proto: cfg.protocol(), outcomes: make(chan outcome, 4096), beforeSend: beforeSend}
	inFlight := 1
	if ll.proto.multiplexed {
		inFlight = cfg.InFlight
	}
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(cfg.Connections) / float64(cfg.Rate))
	for i := range cfg.Connections {
		// Spread the connections' first requests over one interval.
		first := started.Add(interval * time.Duration(i) / time.Duration(cfg.Connections))
		w := &connWorker{ll: ll, id: i + 1, target: cfg.Targets[i%len(cfg.Targets)], interval: interval, next: first, inFlight: inFlight}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(sendCtx)
		}()
	}
	for i := range cfg.Streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ll.proto.stream(sendCtx, cfg.Targets[i%len(cfg.Targets)], cfg.streamMethod(), cfg, cfg.Connections+i+1, &ll.stats, func(o outcome) {
				o.seq = ll.nextSeq()
				ll.outcomes <- o
			})
		}()
	}
	go func() {
		wg.Wait()
		stopSending()
		close(ll.outcomes)
	}()
	return ll.outcomes, &ll.stats
}

type longLived struct {
	cfg      Config
	proto    *protocol
	outcomes chan outcome
	stats    connStats
	seq      atomic.Uint64
	// beforeSend, in tests only.
	beforeSend func(wireConn)
}

// nextSeq numbers requests from 0, in the order they are sent.
func (ll *longLived) nextSeq() uint64 { return ll.seq.Add(1) - 1 }

// connWorker is one long-lived connection (dialled again when it breaks)
// and its pacing.
type connWorker struct {
	ll       *longLived
	id       int
	target   string
	interval time.Duration
	next     time.Time
	inFlight int // requests on the connection at once

	mu  sync.Mutex
	cur wireConn
}

// run sends on the connection's schedule until ctx ends, then lets what
// is on the wire finish (each request ends by its answer, its timeout or
// its connection breaking) and closes the connection.
func (w *connWorker) run(ctx context.Context) {
	window := make(chan struct{}, w.inFlight)
	var sending sync.WaitGroup
	for {
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
		}
		due, ok := w.waitTurn(ctx)
		if !ok {
			break
		}
		o := outcome{seq: w.ll.nextSeq(), at: time.Now(), target: w.target, conn: w.id}
		o.sendLag = max(0, o.at.Sub(due))
		if w.inFlight == 1 {
			w.exchange(o)
			<-window
			continue
		}
		sending.Add(1)
		go func() {
			defer sending.Done()
			w.exchange(o)
			<-window
		}()
	}
	sending.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur != nil {
		w.cur.close()
	}
}

// exchange sends o on the current connection (opening one when there is
// none, or when the server closed it while idle) and hands its outcome
// to the accumulator.
func (w *connWorker) exchange(o outcome) {
	for {
		c, err := w.connection()
		if err != nil {
			o.latency, o.err, o.class = time.Since(o.at), err, Classify(err, 0)
			break
		}
		if w.ll.beforeSend != nil {
			w.ll.beforeSend(c)
		}
		err = c.send(&o)
		if !c.usable() {
			w.forget(c)
		}
		if !errors.Is(err, errClosedIdle) {
			break
		}
	}
	w.ll.outcomes <- o
}

// connection is the worker's open connection, dialled when it has none.
func (w *connWorker) connection() (wireConn, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil {
		c, err := w.ll.proto.open(w.target, w.ll.cfg, &w.ll.stats)
		if err != nil {
			return nil, err
		}
		w.cur = c
	}
	return w.cur, nil
}

// forget drops c, which can carry no more requests, so the next request
// dials again.
func (w *connWorker) forget(c wireConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == c {
		w.cur = nil
	}
}

// waitTurn blocks until the connection's next send slot, or returns false
// when sending is over. A connection that fell behind (its previous
// request took longer than its interval) sends at once, back to back
// until it is on schedule again, but it forgets a backlog older than
// maxBacklog: a server stall is not answered with a flood. due is when
// the request could have left: its slot, or the moment the connection
// was free, whichever is later; how late it really left is the
// generator's own lag.
func (w *connWorker) waitTurn(ctx context.Context) (due time.Time, ok bool) {
	now := time.Now()
	due = maxTime(w.next, now)
	if d := w.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return due, false
		case <-t.C:
		}
	} else if ctx.Err() != nil {
		return due, false
	}
	w.next = maxTime(w.next.Add(w.interval), now.Add(-maxBacklog))
	return due, true
}

// maxBacklog is how far behind its schedule a long-lived connection may
// be and still catch up.
const maxBacklog = time.Second

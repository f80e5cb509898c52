package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// rpcProtocol is nodrop's RPC (package rpcwire): several requests in
// flight per connection, each answered by its id, no polite close.
var rpcProtocol = protocol{
	name: ProtocolRPC, scheme: "rpc", multiplexed: true,
	open: func(target string, cfg Config, stats *connStats) (wireConn, error) {
		c, err := dialTCP(target, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		rc := &rpcConn{conn: c, timeout: cfg.Timeout, stats: stats, pending: map[uint64]*rpcCall{}, lastActive: time.Now()}
		go rc.read()
		return rc, nil
	},
}

// rpcConn is one RPC connection with the requests it has on the wire.
type rpcConn struct {
	conn       net.Conn
	timeout    time.Duration
	stats      *connStats
	wmu        sync.Mutex
	mu         sync.Mutex
	pending    map[uint64]*rpcCall
	broken     bool
	sent       int
	lastActive time.Time // the last frame read, or the dial
}

// rpcCall is one request on the wire: its outcome so far, its timeout,
// and where its end is delivered.
type rpcCall struct {
	o     outcome
	timer *time.Timer
	done  chan outcome
}

func (rc *rpcConn) usable() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return !rc.broken
}

// close ends the connection at the end of a run: not a break the server
// made, so nothing is counted.
func (rc *rpcConn) close() {
	rc.mu.Lock()
	rc.broken = true
	rc.mu.Unlock()
	rc.conn.Close()
}

// send registers the call, writes it and waits for its end: its answer,
// its timeout (which leaves the connection as it is) or the connection
// breaking (which ends every call on it).
func (rc *rpcConn) send(o *outcome) error {
	call, ok := rc.register(*o)
	if !ok {
		return errClosedIdle // broke while idle: counted as a reconnect
	}
	rc.wmu.Lock()
	rc.conn.SetWriteDeadline(time.Now().Add(rc.timeout))
	err := rpcwire.Write(rc.conn, rpcwire.Frame{ID: o.seq, Kind: rpcwire.KindRequest, Payload: []byte("nodrop")})
	rc.wmu.Unlock()
	if err != nil {
		rc.breakConn(err)
	}
	*o = <-call.done
	return nil
}

// register puts the call on the connection's books unless it has broken;
// the check and the registration are one step, so a break can never fall
// between them and leave a call that nobody will answer.
func (rc *rpcConn) register(o outcome) (*rpcCall, bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.broken {
		return nil, false
	}
	o.reused, o.idle = rc.sent > 0, len(rc.pending) == 0
	o.onConnAt = time.Now()
	o.idleFor = o.onConnAt.Sub(rc.lastActive)
	rc.sent++
	id := o.seq
	call := &rpcCall{o: o, done: make(chan outcome, 1)}
	call.timer = time.AfterFunc(rc.timeout, func() {
		rc.finish(id, nil, &timeoutError{after: rc.timeout, err: context.DeadlineExceeded})
	})
	rc.pending[id] = call
	return call, true
}

// finish ends call id once: by its answer f, or by err.
func (rc *rpcConn) finish(id uint64, f *rpcwire.Frame, err error) {
	now := time.Now()
	rc.mu.Lock()
	call, ok := rc.pending[id]
	delete(rc.pending, id)
	if f != nil {
		rc.lastActive = now
	}
	rc.mu.Unlock()
	if !ok {
		return // already ended (timed out, or its connection broke)
	}
	call.timer.Stop()
	o := call.o
	o.latency = now.Sub(o.at)
	switch {
	case err != nil:
		o.err, o.class, o.failedAt = err, Classify(err, 0), now
	case f.Status != rpcwire.StatusOK:
		o.firstByte = true
		o.status, o.class = int(f.Status), HTTP5xx
		o.err = fmt.Errorf("rpc error status %d: %s", f.Status, f.Payload)
	default:
		o.firstByte = true
		o.pod, o.version, _ = strings.Cut(string(f.Payload), " ")
	}
	call.done <- o
}

// breakConn ends the connection and every call on it with err. A break
// with calls on the wire is counted as broken; one with nothing on it, not
// of nodrop's making, as the server closing an idle connection.
func (rc *rpcConn) breakConn(err error) {
	rc.mu.Lock()
	if rc.broken {
		rc.mu.Unlock()
		return
	}
	rc.broken = true
	ids := make([]uint64, 0, len(rc.pending))
	for id := range rc.pending {
		ids = append(ids, id)
	}
	rc.mu.Unlock()
	rc.conn.Close()
	if len(ids) > 0 {
		rc.stats.broken.Add(1)
	} else if !errors.Is(err, net.ErrClosed) {
		rc.stats.reconnects.Add(1)
	}
	for _, id := range ids {
		rc.finish(id, nil, err)
	}
}

// read delivers answers until the connection ends.
func (rc *rpcConn) read() {
	br := bufio.NewReader(rc.conn)
	for {
		f, err := rpcwire.Read(br)
		if err == nil && f.Kind != rpcwire.KindResponse {
			err = fmt.Errorf("%w: kind %d from the server", rpcwire.ErrMalformed, f.Kind)
		}
		if err != nil {
			rc.breakConn(err)
			return
		}
		rc.finish(f.ID, &f, nil)
	}
}

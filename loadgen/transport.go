package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// errRetried stands for a retry whose first failure left no trace.
var errRetried = errors.New("net/http retried the request on a new connection")

// seqHeader is set by vegeta on every request; it ties a vegeta Result
// back to what nodrop's transport saw for the same request.
const seqHeader = "X-Vegeta-Seq"

// attempt is what the transport observed for one request: vegeta keeps
// only the error's text, nodrop keeps the error itself.
type attempt struct {
	mu        sync.Mutex     // trace hooks run on transport goroutines
	conns     []*trackedConn // one per connection attempt; more than one means net/http retried
	reused    bool           // the first connection was a kept-alive one
	idleFor   time.Duration  // how long that connection had carried nothing
	getConn   time.Time      // when the request asked for a connection
	gotConn   time.Time      // when it got one
	failedAt  time.Time      // when RoundTrip or the body read failed
	firstByte bool           // some response byte arrived
	err       error          // from RoundTrip or from reading the body
	// localPort is the client's port of its first connection; dial is
	// the socket of the connection attempt made for it, whose port is
	// all that is known of an attempt that failed: what the node's
	// conntrack table knows the connection by.
	localPort int
	dial      *socketRef
}

// port is the client's port of the request's connection, or of the
// attempt made for it (0 if unknown).
func (a *attempt) port() int {
	if a.localPort != 0 {
		return a.localPort
	}
	return a.dial.port()
}

// attemptKey carries a request's attempt to the dial made for it.
type attemptKey struct{}

// retried reports whether net/http sent the request more than once.
func (a *attempt) retried() bool { return len(a.conns) > 1 }

// cause is the most precise error known for a failed request: the error
// net/http returned or, when that is a flattened sentinel such as "server
// closed idle connection", the read or write error its connection hit.
func (a *attempt) cause() error {
	if a.err != nil && Classify(a.err, 0) != Other {
		return a.err
	}
	if len(a.conns) > 0 {
		// A closed-connection error is net/http closing the socket after
		// the failure, not the failure itself.
		if err := a.conns[len(a.conns)-1].failure(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
	}
	return a.err
}

// retryCause is why net/http had to retry: the failure of the first
// connection the request was sent on.
func (a *attempt) retryCause() error {
	if err := a.conns[0].failure(); err != nil {
		return err
	}
	return errRetried
}

// pool is where requests get their connections: one transport for fresh
// connections, a fifoPool for kept-alive ones.
type pool interface {
	http.RoundTripper
	CloseIdleConnections()
}

// tracker records an attempt per vegeta sequence number. It also owns
// each request's deadline, so a request cut off by it is known for sure to
// be a timeout, whatever error net/http returns for the cancellation.
type tracker struct {
	base    pool
	strict  bool
	timeout time.Duration

	mu       sync.Mutex
	attempts map[uint64]*attempt
}

func newTracker(cfg Config) *tracker {
	t := &tracker{strict: !cfg.Lenient, timeout: cfg.Timeout, attempts: make(map[uint64]*attempt)}
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, ControlContext: keepSocket}
	if cfg.DisableKeepAlive {
		dialer.KeepAlive = -1
	}
	transport := func(connsPerHost int) *http.Transport {
		return &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				sock := &socketRef{}
				if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
					a.mu.Lock()
					a.dial = sock
					a.mu.Unlock()
				}
				c, err := dialer.DialContext(context.WithValue(ctx, socketKey{}, sock), network, addr)
				port := sock.release()
				if err != nil {
					return nil, err
				}
				tracked := &trackedConn{Conn: c, lastRead: time.Now(), localPort: port}
				if tc, ok := c.(*net.TCPConn); ok && cfg.DisableKeepAlive {
					// A fresh connection is closed once its response is read;
					// closing it with RST leaves no TIME_WAIT on either side.
					// Otherwise, at 1000 new connections/s to one server
					// address, the kernel soon reuses a source port whose
					// previous connection the server still holds in TIME_WAIT,
					// and that SYN can be lost: a loss the configuration under
					// test did not cause (seen once in 24,000 requests).
					// The RST waits for the server's FIN (see awaitFIN).
					tc.SetLinger(0)
					tracked.awaitFIN = finWait
				}
				return tracked, nil
			},
			DisableKeepAlives:   cfg.DisableKeepAlive,
			MaxConnsPerHost:     connsPerHost,
			MaxIdleConnsPerHost: connsPerHost,
			MaxIdleConns:        connsPerHost * max(1, len(cfg.Targets)),
			IdleConnTimeout:     cfg.IdleTimeout,
			DisableCompression:  true,
			// A proxy from the environment would put a hop between nodrop
			// and the server that can hide or rewrite failures.
			Proxy: nil,
		}
	}
	if cfg.DisableKeepAlive {
		t.base = transport(cfg.MaxConns)
	} else {
		t.base = newFIFOPool(cfg.MaxConns, func() *http.Transport { return transport(1) })
	}
	return t
}

// take removes and returns the attempt recorded for seq.
func (t *tracker) take(seq uint64) *attempt {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.attempts[seq]
	delete(t.attempts, seq)
	return a
}

// RoundTrip implements http.RoundTripper.
func (t *tracker) RoundTrip(req *http.Request) (*http.Response, error) {
	a := &attempt{}
	if seq, err := strconv.ParseUint(req.Header.Get(seqHeader), 10, 64); err == nil {
		t.mu.Lock()
		t.attempts[seq] = a
		t.mu.Unlock()
	}
	a.getConn = time.Now()
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			now := time.Now()
			a.mu.Lock()
			defer a.mu.Unlock()
			tc, _ := info.Conn.(*trackedConn)
			if len(a.conns) == 0 {
				a.reused, a.gotConn = info.Reused, now
				if info.Reused && tc != nil {
					a.idleFor = now.Sub(tc.lastActive())
				}
				if tc != nil {
					a.localPort = tc.localPort
				}
			}
			a.conns = append(a.conns, tc)
		},
		GotFirstResponseByte: func() {
			a.mu.Lock()
			a.firstByte = true
			a.mu.Unlock()
		},
	}
	ctx, cancel := context.WithTimeout(httptrace.WithClientTrace(context.WithValue(req.Context(), attemptKey{}, a), trace), t.timeout)
	out := req.WithContext(ctx)
	if t.strict {
		makeNonReplayable(out)
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		cancel()
		err = t.deadlineOr(ctx, err)
		a.mu.Lock()
		a.err, a.failedAt = err, time.Now()
		a.mu.Unlock()
		return nil, err
	}
	resp.Body = &trackedBody{ReadCloser: resp.Body, t: t, ctx: ctx, cancel: cancel, a: a}
	return resp, nil
}

// deadlineOr returns err, or a timeout error if the request's deadline
// had passed when it failed.
func (t *tracker) deadlineOr(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &timeoutError{after: t.timeout, err: err}
	}
	return err
}

// timeoutError is a request cut off by its deadline.
type timeoutError struct {
	after time.Duration
	err   error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no complete response within %s (%v)", e.after, e.err)
}
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }
func (e *timeoutError) Timeout() bool { return true }

// makeNonReplayable stops net/http from silently re-sending a request
// that failed on a reused connection. The Transport retries only requests
// it can replay: no body, or a body with GetBody. A body that is present
// but cannot be rewound is neither, and an empty one still goes out as a
// plain request without Content-Length or chunking.
func makeNonReplayable(req *http.Request) {
	if req.Body == nil || req.Body == http.NoBody {
		req.Body = emptyBody{}
		req.ContentLength = 0
	}
	req.GetBody = nil
}

type emptyBody struct{}

func (emptyBody) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyBody) Close() error             { return nil }

// trackedBody records the error of a failed body read: a response cut off
// mid-body is as lost as one never sent.
type trackedBody struct {
	io.ReadCloser
	t      *tracker
	ctx    context.Context
	cancel context.CancelFunc
	a      *attempt
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.t.deadlineOr(b.ctx, err)
		b.a.mu.Lock()
		if b.a.err == nil {
			b.a.err, b.a.failedAt = err, time.Now()
		}
		b.a.mu.Unlock()
	}
	return n, err
}

func (b *trackedBody) Close() error {
	defer b.cancel()
	return b.ReadCloser.Close()
}

// trackedConn remembers the first read and write error of a connection,
// so a loss that net/http reports as "server closed idle connection" can
// still be told apart as an EOF or a reset.
type trackedConn struct {
	net.Conn
	mu       sync.Mutex
	readErr  error
	writeErr error
	lastRead time.Time // the last byte that arrived (or the dial)
	// localPort is the client's port (0 if unknown).
	localPort int
	// awaitFIN, when set, is how long Close waits for the server's FIN
	// before it resets the connection (a fresh connection's close).
	awaitFIN time.Duration
	reading  atomic.Int32 // Reads in progress
}

// finWait bounds how long a fresh connection's close waits for the
// server's FIN. A server answering "Connection: close" sends it right
// behind the response, within a millisecond here; one that keeps the
// connection open costs each of its connections this much more before
// it is reset.
const finWait = 100 * time.Millisecond

// Close closes the connection. A fresh connection (awaitFIN) whose
// requests went well is reset only once the server's FIN has arrived:
// an RST that crosses the server's FIN on the way leaves the node's
// conntrack entry in CLOSE with the FIN as its last packet, and the
// kernel reopens a closed entry for a new SYN from the same client port
// only if the connection's close began with a FIN or its last packet
// was an RST from the client (nf_conntrack_proto_tcp). A connection
// that reuses the port within the entry's 10 s then skips kube-proxy's
// rules and follows the old one to its pod, which may have stopped
// listening since: refused, or unanswered once the pod is gone. Seen:
// one port, a refusal 10 s after its last request went to a pod that
// had just exited, then a timeout 3 s later, in a lossless rollout.
func (c *trackedConn) Close() error {
	if c.awaitFIN > 0 && c.reading.Load() == 0 && c.failure() == nil {
		c.drain(c.awaitFIN)
	}
	return c.Conn.Close()
}

// drain reads until the server closes its side (EOF), anything fails, or
// d has passed; what it reads is not the request's, and neither are its
// errors.
func (c *trackedConn) drain(d time.Duration) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return
	}
	var buf [512]byte
	for {
		if _, err := c.Conn.Read(buf[:]); err != nil {
			return
		}
	}
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.reading.Add(1)
	defer c.reading.Add(-1)
	n, err := c.Conn.Read(p)
	if n > 0 || err != nil {
		c.mu.Lock()
		if n > 0 {
			c.lastRead = time.Now()
		}
		if err != nil && c.readErr == nil {
			c.readErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// lastActive is when the connection last received a byte.
func (c *trackedConn) lastActive() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRead
}

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.mu.Lock()
		if c.writeErr == nil {
			c.writeErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// failure is the connection's first write error, else its first read
// error.
func (c *trackedConn) failure() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	return c.readErr
}

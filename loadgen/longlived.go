package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// Protocols of long-lived mode, chosen by the target's scheme.
const (
	ProtocolHTTP = "http" // HTTP/1.1 keep-alive, one request at a time per connection
	ProtocolRPC  = "rpc"  // rpcwire, several requests in flight per connection
)

// DefaultInFlight is how many requests an RPC connection keeps on the wire.
const DefaultInFlight = 4

// errConnClosedByServer is an HTTP response that said Connection: close:
// the server asked the client to move, which is how a drain should look.
var errConnClosedByServer = errors.New("server answered Connection: close")

// sendLongLived is long-lived load: cfg.Connections connections, each
// sending back to back (paced so all together send at most cfg.Rate per
// second) for the whole run. A connection that breaks loses what it had
// on the wire and is dialled again, and both are counted; one the server
// closes politely (HTTP Connection: close, or a close seen while the
// connection was idle) counts as a reconnect, not a loss.
func sendLongLived(ctx context.Context, cfg Config, started time.Time, duration time.Duration) (<-chan outcome, func() (reconnects, broken int)) {
	return sendLongLivedWith(ctx, cfg, started, duration, nil)
}

// sendLongLivedWith is sendLongLived with a hook for tests (see
// longLived.beforeRegister).
func sendLongLivedWith(ctx context.Context, cfg Config, started time.Time, duration time.Duration, beforeRegister func(*rpcConn)) (<-chan outcome, func() (reconnects, broken int)) {
	sendCtx, stopSending := context.WithTimeout(ctx, duration)
	ll := &longLived{cfg: cfg, outcomes: make(chan outcome, 4096), started: started, beforeRegister: beforeRegister}
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(cfg.Connections) / float64(cfg.Rate))
	for i := range cfg.Connections {
		target := cfg.Targets[i%len(cfg.Targets)]
		// Spread the connections' first requests over one interval.
		first := started.Add(interval * time.Duration(i) / time.Duration(cfg.Connections))
		w := &connWorker{ll: ll, id: i + 1, target: target, interval: interval, next: first}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.protocol() == ProtocolRPC {
				w.runRPC(sendCtx)
			} else {
				w.runHTTP(sendCtx)
			}
		}()
	}
	go func() {
		wg.Wait()
		stopSending()
		close(ll.outcomes)
	}()
	return ll.outcomes, func() (int, int) { return int(ll.reconnects.Load()), int(ll.broken.Load()) }
}

type longLived struct {
	cfg        Config
	started    time.Time
	seq        atomic.Uint64
	outcomes   chan outcome
	reconnects atomic.Int64 // closed by the server without a loss (Connection: close, idle close), then a new connection
	broken     atomic.Int64 // connections that failed under requests
	// beforeRegister, in tests only, runs between taking an RPC
	// connection and registering a call on it.
	beforeRegister func(*rpcConn)
}

// nextSeq numbers requests from 0, in the order they are sent.
func (ll *longLived) nextSeq() uint64 { return ll.seq.Add(1) - 1 }

// connWorker is one long-lived connection and its pacing.
type connWorker struct {
	ll       *longLived
	id       int
	target   string
	interval time.Duration
	next     time.Time
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

func (w *connWorker) dial() (net.Conn, error) {
	u, _ := url.Parse(w.target)
	c, err := net.DialTimeout("tcp", u.Host, w.ll.cfg.Timeout)
	if err != nil {
		return nil, err
	}
	// Closing at the end of the run must not leave a TIME_WAIT per
	// connection, nor look to the server like a half-close it must answer.
	c.(*net.TCPConn).SetLinger(0)
	return c, nil
}

// countingReader tells whether any byte of a response arrived.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (w *connWorker) runHTTP(ctx context.Context) {
	var (
		conn     net.Conn
		cr       *countingReader
		br       *bufio.Reader
		served   int       // requests answered on conn
		lastRead time.Time // when conn's last response ended
	)
	closeConn := func() {
		if conn != nil {
			conn.Close()
			conn = nil
		}
	}
	defer closeConn()
	for {
		due, ok := w.waitTurn(ctx)
		if !ok {
			return
		}
		if conn != nil && closedWhileIdle(conn, br) {
			// The server closed it between requests, as any pooled client
			// would notice: move on, nothing was on the wire.
			w.ll.reconnects.Add(1)
			closeConn()
		}
		o := outcome{seq: w.ll.nextSeq(), at: time.Now(), target: w.target, conn: w.id}
		o.sendLag = max(0, o.at.Sub(due))
		if conn == nil {
			c, err := w.dial()
			if err != nil {
				o.latency, o.err = time.Since(o.at), err
				o.class = Classify(err, 0)
				w.ll.outcomes <- o
				continue
			}
			conn, served, lastRead = c, 0, time.Now()
			cr = &countingReader{r: conn}
			br = bufio.NewReader(cr)
		}
		o.reused, o.idle = served > 0, true
		o.onConnAt = time.Now()
		o.idleFor = o.onConnAt.Sub(lastRead)
		resp, err := w.roundTripHTTP(conn, br, cr, o.seq)
		o.latency = time.Since(o.at)
		o.firstByte = cr.n > 0
		if err != nil {
			o.err, o.failedAt = err, time.Now()
			o.class = Classify(err, 0)
			w.ll.broken.Add(1)
			closeConn()
			w.ll.outcomes <- o
			continue
		}
		served++
		lastRead = time.Now()
		o.status = resp.StatusCode
		o.pod, o.version = resp.Header.Get(PodHeader), resp.Header.Get(VersionHeader)
		o.class = Classify(nil, resp.StatusCode)
		if resp.Close {
			w.ll.reconnects.Add(1)
			closeConn()
		}
		w.ll.outcomes <- o
	}
}

// closedWhileIdle looks at an idle connection without blocking, as a
// pooled client's read loop does: a FIN or RST that has arrived, or bytes
// nobody asked for (a server's parting 408), mean the server is done with
// it.
func closedWhileIdle(conn net.Conn, br *bufio.Reader) bool {
	if br.Buffered() > 0 {
		return true
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		// EAGAIN: nothing there. Anything else is the end: 0 bytes is a
		// FIN, an error a reset, a byte something nobody asked for.
		closed = err != unix.EAGAIN && err != unix.EINTR
		return true // never wait
	})
	return closed || err != nil
}

// roundTripHTTP sends one request on conn and reads its whole response,
// within the run's per-request timeout.
func (w *connWorker) roundTripHTTP(conn net.Conn, br *bufio.Reader, cr *countingReader, seq uint64) (*http.Response, error) {
	cfg := w.ll.cfg
	deadline := time.Now().Add(cfg.Timeout)
	conn.SetDeadline(deadline)
	cr.n = 0
	req, err := http.NewRequest(cfg.Method, w.target, bytes.NewReader(cfg.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range cfg.Header {
		req.Header[k] = vs
	}
	req.Header.Set("X-Nodrop-Seq", strconv.FormatUint(seq, 10))
	bw := bufio.NewWriter(conn)
	if err := req.Write(bw); err != nil {
		return nil, w.deadlineErr(err)
	}
	if err := bw.Flush(); err != nil {
		return nil, w.deadlineErr(err)
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, w.deadlineErr(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, w.deadlineErr(err)
	}
	return resp, nil
}

func (w *connWorker) deadlineErr(err error) error {
	if isNetTimeout(err) {
		return &timeoutError{after: w.ll.cfg.Timeout, err: err}
	}
	return err
}

// rpcConn is one RPC connection with the requests it has on the wire.
type rpcConn struct {
	conn       net.Conn
	wmu        sync.Mutex
	mu         sync.Mutex
	pending    map[uint64]*rpcCall
	broken     bool
	sent       int
	lastActive time.Time // the last frame read, or the dial
}

type rpcCall struct {
	o     outcome
	timer *time.Timer
}

func (w *connWorker) runRPC(ctx context.Context) {
	cfg := w.ll.cfg
	window := make(chan struct{}, cfg.InFlight)
	var cur *rpcConn
	var calls sync.WaitGroup
	finish := func(rc *rpcConn, id uint64, f *rpcwire.Frame, err error) {
		now := time.Now()
		rc.mu.Lock()
		call, ok := rc.pending[id]
		delete(rc.pending, id)
		if f != nil {
			rc.lastActive = now
		}
		rc.mu.Unlock()
		if !ok {
			return // already judged (timed out, or its connection broke)
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
		w.ll.outcomes <- o
		<-window
		calls.Done()
	}
	breakConn := func(rc *rpcConn, err error) {
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
			w.ll.broken.Add(1)
		} else if !errors.Is(err, net.ErrClosed) {
			// Closed by the server between requests: nothing lost, and
			// the next request opens another connection.
			w.ll.reconnects.Add(1)
		}
		for _, id := range ids {
			finish(rc, id, nil, err)
		}
	}
	read := func(rc *rpcConn) {
		br := bufio.NewReader(rc.conn)
		for {
			f, err := rpcwire.Read(br)
			if err == nil && f.Kind != rpcwire.KindResponse {
				err = fmt.Errorf("%w: kind %d from the server", rpcwire.ErrMalformed, f.Kind)
			}
			if err != nil {
				breakConn(rc, err)
				return
			}
			finish(rc, f.ID, &f, nil)
		}
	}
	dial := func() (*rpcConn, error) {
		c, err := w.dial()
		if err != nil {
			return nil, err
		}
		rc := &rpcConn{conn: c, pending: map[uint64]*rpcCall{}, lastActive: time.Now()}
		go read(rc)
		return rc, nil
	}
	// register puts the call on rc's books unless rc has broken; the check
	// and the registration are one step, so a break can never fall
	// between them and leave a call that nobody will answer.
	register := func(rc *rpcConn, o outcome) (*rpcCall, bool) {
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
		call := &rpcCall{o: o}
		call.timer = time.AfterFunc(cfg.Timeout, func() {
			finish(rc, id, nil, &timeoutError{after: cfg.Timeout, err: context.DeadlineExceeded})
		})
		rc.pending[id] = call
		return call, true
	}

	for {
		due, ok := w.waitTurn(ctx)
		if !ok {
			break
		}
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			continue // the loop ends at waitTurn
		}
		calls.Add(1)
		o := outcome{seq: w.ll.nextSeq(), at: time.Now(), target: w.target, conn: w.id}
		o.sendLag = max(0, o.at.Sub(due))
		var rc *rpcConn
		for rc == nil {
			if cur == nil {
				c, err := dial()
				if err != nil {
					o.latency, o.err, o.class = time.Since(o.at), err, Classify(err, 0)
					break
				}
				cur = c
			}
			if w.ll.beforeRegister != nil {
				w.ll.beforeRegister(cur)
			}
			if _, ok := register(cur, o); ok {
				rc = cur
			} else {
				cur = nil // broke while idle: counted as a reconnect, dial again
			}
		}
		if rc == nil {
			w.ll.outcomes <- o
			<-window
			calls.Done()
			continue
		}
		rc.wmu.Lock()
		rc.conn.SetWriteDeadline(time.Now().Add(cfg.Timeout))
		err := rpcwire.Write(rc.conn, rpcwire.Frame{ID: o.seq, Kind: rpcwire.KindRequest, Payload: []byte("nodrop")})
		rc.wmu.Unlock()
		if err != nil {
			breakConn(rc, err)
		}
	}
	// Sending is over: let what is on the wire finish (each call ends by
	// its answer, its timeout or its connection breaking), then close.
	calls.Wait()
	if cur != nil {
		cur.mu.Lock()
		cur.broken = true
		cur.mu.Unlock()
		cur.conn.Close()
	}
}

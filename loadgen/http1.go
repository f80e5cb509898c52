package loadgen

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// httpProtocol is HTTP/1.1 on long-lived connections: keep-alive, one
// request at a time, a close that arrived while idle checked before each
// request as a pooled client's read loop would.
var httpProtocol = protocol{
	name: ProtocolHTTP, scheme: "http", hasMethod: true, hasPath: true,
	appProtocols: []string{"http", "kubernetes.io/http"},
	open: func(target string, cfg Config, stats *connStats) (wireConn, error) {
		c, err := dialTCP(target, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		h := &httpConn{cfg: cfg, target: target, stats: stats, conn: c, lastRead: time.Now()}
		h.cr = &countingReader{r: c}
		h.br = bufio.NewReader(h.cr)
		return h, nil
	},
}

// httpConn is one long-lived HTTP/1.1 connection.
type httpConn struct {
	cfg      Config
	target   string
	stats    *connStats
	conn     net.Conn
	cr       *countingReader
	br       *bufio.Reader
	served   int       // requests answered on it
	lastRead time.Time // when its last response ended, or the dial
	closed   bool
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

func (h *httpConn) usable() bool { return !h.closed }

func (h *httpConn) close() {
	if !h.closed {
		h.closed = true
		h.conn.Close()
	}
}

// send: a request that fails breaks the connection; an answer with
// Connection: close is the server asking the client to move (a reconnect,
// which is how a drain should look).
func (h *httpConn) send(o *outcome) error {
	if h.served > 0 && closedWhileIdle(h.conn, h.br) {
		// The server closed it between requests, as any pooled client
		// would notice: move on, nothing was on the wire.
		h.stats.reconnects.Add(1)
		h.close()
		return errClosedIdle
	}
	o.reused, o.idle = h.served > 0, true
	o.onConnAt = time.Now()
	o.idleFor = o.onConnAt.Sub(h.lastRead)
	resp, err := h.roundTrip(o.seq)
	o.latency = time.Since(o.at)
	o.firstByte = h.cr.n > 0
	if err != nil {
		o.err, o.failedAt = err, time.Now()
		o.class = Classify(err, 0)
		h.stats.broken.Add(1)
		h.close()
		return nil
	}
	h.served++
	h.lastRead = time.Now()
	o.status = resp.StatusCode
	o.pod, o.version = resp.Header.Get(PodHeader), resp.Header.Get(VersionHeader)
	o.class = Classify(nil, resp.StatusCode)
	if resp.Close {
		h.stats.reconnects.Add(1)
		h.close()
	}
	return nil
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

// roundTrip sends one request and reads its whole response, within the
// run's per-request timeout.
func (h *httpConn) roundTrip(seq uint64) (*http.Response, error) {
	h.conn.SetDeadline(time.Now().Add(h.cfg.Timeout))
	h.cr.n = 0
	req, err := http.NewRequest(h.cfg.Method, h.target, bytes.NewReader(h.cfg.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range h.cfg.Header {
		req.Header[k] = vs
	}
	req.Header.Set("X-Nodrop-Seq", strconv.FormatUint(seq, 10))
	bw := bufio.NewWriter(h.conn)
	if err := req.Write(bw); err != nil {
		return nil, h.deadlineErr(err)
	}
	if err := bw.Flush(); err != nil {
		return nil, h.deadlineErr(err)
	}
	resp, err := http.ReadResponse(h.br, req)
	if err != nil {
		return nil, h.deadlineErr(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, h.deadlineErr(err)
	}
	return resp, nil
}

func (h *httpConn) deadlineErr(err error) error {
	if isNetTimeout(err) {
		return &timeoutError{after: h.cfg.Timeout, err: err}
	}
	return err
}

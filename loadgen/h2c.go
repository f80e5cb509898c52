package loadgen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2cProtocol is HTTP/2 over cleartext with prior knowledge (h2c://host:
// port/path): several requests in flight on each pinned connection, as a
// service-to-service HTTP/2 client sends them. It is strict: one
// connection per worker and no pool, so nothing is sent again — a
// request the server refused unprocessed (a stream above a GOAWAY's last
// stream, REFUSED_STREAM) is lost as refused and counted a GOAWAY race,
// where net/http's pooled HTTP/2 transport would retry it on another
// connection. A GOAWAY that leaves nothing cut is the server draining: a
// reconnect, as a polite HTTP/1.1 close is.
var h2cProtocol = protocol{
	name: "h2c", scheme: "h2c", multiplexed: true, hasMethod: true, hasPath: true,
	http2:        true,
	appProtocols: []string{"h2c", "kubernetes.io/h2c"},
	open: func(target string, cfg Config, stats *connStats) (wireConn, error) {
		u, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		c, err := dialTCP(target, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		t := &http2.Transport{AllowHTTP: true, DisableCompression: true, StrictMaxConcurrentStreams: true}
		cc, err := t.NewClientConn(c)
		if err != nil {
			c.Close()
			return nil, err
		}
		u.Scheme = "http"
		return &h2cConn{cfg: cfg, url: u.String(), cc: cc, stats: stats, lastEnd: time.Now()}, nil
	},
}

// h2cConn is one HTTP/2 connection and the requests it has on the wire.
type h2cConn struct {
	cfg   Config
	url   string
	cc    *http2.ClientConn
	stats *connStats

	mu       sync.Mutex
	inFlight int
	sent     int
	lastEnd  time.Time // the last request's end, or the dial
	cut      bool      // a request was cut on it
	ended    bool      // its end is counted, or nodrop closed it
}

// usable: no GOAWAY arrived and the connection is open.
func (h *h2cConn) usable() bool {
	st := h.cc.State()
	return !st.Closed && !st.Closing
}

// close ends the connection at the end of a run: not an end the server
// made, so nothing is counted.
func (h *h2cConn) close() {
	h.mu.Lock()
	h.ended = true
	h.mu.Unlock()
	h.cc.Close()
}

// settle counts, once, the end of a connection the server ended, when
// nothing is on it any more: broken when a request was cut on it, a
// reconnect otherwise. Called with h.mu held.
func (h *h2cConn) settle() {
	if h.ended || h.inFlight > 0 || h.usable() {
		return
	}
	h.ended = true
	if h.cut {
		h.stats.broken.Add(1)
	} else {
		h.stats.reconnects.Add(1)
	}
	go h.cc.Close()
}

// send: a connection the server is draining takes no more requests
// (errClosedIdle: the caller dials again); the rest go on the wire.
func (h *h2cConn) send(o *outcome) error {
	h.mu.Lock()
	if !h.usable() {
		h.settle()
		h.mu.Unlock()
		return errClosedIdle
	}
	o.reused, o.idle = h.sent > 0, h.inFlight == 0
	o.onConnAt = time.Now()
	o.idleFor = o.onConnAt.Sub(h.lastEnd)
	h.sent++
	h.inFlight++
	h.mu.Unlock()

	resp, err := h.roundTrip(o.seq)
	now := time.Now()
	o.latency = now.Sub(o.at)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inFlight--
	h.lastEnd = now
	if err != nil {
		o.err, o.failedAt = err, now
		o.class, o.goAwayRace = h2Class(err)
		if o.class == EOF || o.class == Reset {
			h.cut = true
		}
	} else {
		o.firstByte = true
		o.status = resp.StatusCode
		o.pod, o.version = resp.Header.Get(PodHeader), resp.Header.Get(VersionHeader)
		o.class = Classify(nil, resp.StatusCode)
	}
	h.settle()
	return nil
}

// roundTrip sends request seq and reads its whole answer within the
// run's timeout.
func (h *h2cConn) roundTrip(seq uint64) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Timeout)
	defer cancel()
	method := h.cfg.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url, bytes.NewReader(h.cfg.Body))
	if err != nil {
		return nil, err
	}
	for k, v := range h.cfg.Header {
		req.Header[k] = v
	}
	if host := h.cfg.Header.Get("Host"); host != "" {
		req.Host = host
	}
	req.Header.Set(seqHeader, strconv.FormatUint(seq, 10))
	resp, err := h.cc.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return nil, err
	}
	return resp, nil
}

// h2Class is the class of a failed HTTP/2 request, and whether the
// server refused it unprocessed at a GOAWAY (or with REFUSED_STREAM):
// refused, a GOAWAY race. A connection the server closed under a request
// is EOF, a stream it reset is reset, the run's deadline a timeout.
func h2Class(err error) (Class, bool) {
	var se http2.StreamError
	if errors.As(err, &se) {
		if se.Code == http2.ErrCodeRefusedStream {
			return Refused, true
		}
		return Reset, false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return Timeout, false
	}
	msg := err.Error()
	if strings.Contains(msg, "graceful shutdown GOAWAY") {
		// A stream above the GOAWAY's last stream: never processed.
		return Refused, true
	}
	var ga http2.GoAwayError
	if errors.As(err, &ga) || strings.Contains(msg, "GOAWAY") {
		return EOF, false
	}
	if c := Classify(err, 0); c != Other {
		return c, false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Timeout, false
	}
	if strings.Contains(msg, "connection lost") || strings.Contains(msg, "client connection force closed") {
		return EOF, false
	}
	return Other, false
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// maxPending bounds the bytes a connection may hold that do not yet make
// a whole request (HTTP headers, an RPC frame).
const maxPending = 64 << 10

// Protocols a listener speaks.
const (
	protoHTTP = "http"
	protoRPC  = "rpc"
)

// How a connection's serve loop ended.
const (
	endClosed   = iota // the client left, or the proxy closed it
	endMigrate         // stopped at a request boundary, ready to hand over
	endCloseNow        // the proxy closes it (drain, close-idle style)
)

// clientConn is one client connection. Its serve loop reads into pending
// and takes whole requests off the front, so at any moment the bytes read
// but not yet used are exactly pending: what a migration must carry.
type clientConn struct {
	p       *proxy
	c       *net.TCPConn
	proto   string
	pending []byte

	quiesce  atomic.Bool // stop at the next request boundary (migration)
	closing  atomic.Bool // close at the next request boundary, without telling the client
	inflight sync.WaitGroup
	wmu      sync.Mutex
	done     chan struct{}
	end      int
}

func (cc *clientConn) interrupt() { cc.c.SetReadDeadline(time.Now()) }

func (cc *clientConn) serve() {
	defer close(cc.done)
	buf := make([]byte, 32<<10)
	for {
		for {
			if cc.quiesce.Load() {
				cc.end = endMigrate
				return
			}
			if cc.closing.Load() {
				cc.end = endCloseNow
				return
			}
			keep, used, err := cc.next()
			if err != nil {
				cc.p.logf("conn_error", "error", err.Error(), "remote", cc.c.RemoteAddr().String())
				cc.end = endCloseNow
				return
			}
			if !keep {
				cc.end = endCloseNow
				return
			}
			if !used {
				break
			}
		}
		n, err := cc.c.Read(buf)
		cc.pending = append(cc.pending, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && (cc.quiesce.Load() || cc.closing.Load()) {
				continue // the loop's top says why it was interrupted
			}
			cc.end = endClosed
			return
		}
	}
}

// next takes one whole request off pending and handles it. used is false
// when pending holds no whole request yet; keep false when the connection
// must close after it.
func (cc *clientConn) next() (keep, used bool, err error) {
	if cc.proto == protoRPC {
		n, err := rpcwire.Split(cc.pending)
		if err != nil || n == 0 {
			return err == nil, false, err
		}
		f, err := rpcwire.Parse(bytes.Clone(cc.pending[:n]))
		cc.pending = cc.pending[n:]
		if err != nil {
			return false, true, err
		}
		if f.Kind != rpcwire.KindRequest {
			return false, true, fmt.Errorf("%w: kind %d from a client", rpcwire.ErrMalformed, f.Kind)
		}
		cc.inflight.Add(1)
		go cc.answerRPC(f)
		return true, true, nil
	}
	req, n, err := splitHTTP(cc.pending)
	if err != nil {
		cc.writeHTTPError(http.StatusBadRequest, err)
		return false, true, err
	}
	if req == nil {
		if len(cc.pending) > maxPending {
			cc.writeHTTPError(http.StatusRequestHeaderFieldsTooLarge, errors.New("request headers too large"))
			return false, true, errors.New("request headers too large")
		}
		return true, false, nil
	}
	cc.pending = cc.pending[n:]
	return cc.answerHTTP(req), true, nil
}

// splitHTTP parses one whole HTTP/1.x request at the start of b, or
// returns nil when b holds only part of one. Bodies must have a
// Content-Length; nodrop's clients send no chunked bodies.
func splitHTTP(b []byte) (*http.Request, int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, nil
	}
	end += 4
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
	if err != nil {
		return nil, 0, fmt.Errorf("parsing request: %w", err)
	}
	if len(req.TransferEncoding) > 0 {
		return nil, 0, errors.New("chunked request bodies are not supported")
	}
	if req.ContentLength < 0 || req.ContentLength > maxPending {
		return nil, 0, fmt.Errorf("request body of %d bytes is not supported", req.ContentLength)
	}
	n := end + int(req.ContentLength)
	if len(b) < n {
		return nil, 0, nil
	}
	// A request without a body goes on as one (http.NoBody), not as an
	// empty body: the transport can then send it again on a new
	// connection when the app closed the pooled one it was written on
	// before answering (the app's Shutdown closes its idle connections),
	// as Go's reverse proxy does; a body it could not replay.
	req.Body = http.NoBody
	if req.ContentLength > 0 {
		req.Body = io.NopCloser(bytes.NewReader(bytes.Clone(b[end:n])))
	}
	return req, n, nil
}

func (cc *clientConn) answerHTTP(req *http.Request) bool {
	p := cc.p
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.RequestURI = "http", p.cfg.upstream, ""
	for _, h := range hopByHop {
		out.Header.Del(h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.upstreamTimeout)
	defer cancel()
	resp, err := p.httpUp.RoundTrip(out.WithContext(ctx))
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		p.upstreamFailed(err)
		cc.writeHTTPError(http.StatusBadGateway, fmt.Errorf("upstream: %w", err))
		return !req.Close
	}
	h := resp.Header.Clone()
	for _, k := range hopByHop {
		h.Del(k)
	}
	h.Set(proxyHeader, p.cfg.version)
	// A draining proxy tells each client to move after this response;
	// with --pass-close, so does a draining app.
	closeAfter := req.Close || p.draining.Load() || p.cfg.passClose && resp.Close
	out2 := &http.Response{
		StatusCode: resp.StatusCode, ProtoMajor: 1, ProtoMinor: 1, Header: h,
		ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Close: closeAfter,
	}
	if err := cc.writeResponse(out2); err != nil {
		return false
	}
	return !closeAfter
}

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// proxyHeader names the proxy version that answered.
const proxyHeader = "X-Nodrop-Proxy"

func (cc *clientConn) writeHTTPError(code int, err error) {
	body := err.Error() + "\n"
	cc.writeResponse(&http.Response{
		StatusCode: code, ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}, proxyHeader: {cc.p.cfg.version}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)),
	})
}

func (cc *clientConn) writeResponse(resp *http.Response) error {
	bw := bufio.NewWriter(cc.c)
	cc.c.SetWriteDeadline(time.Now().Add(cc.p.cfg.upstreamTimeout))
	if err := resp.Write(bw); err != nil {
		return err
	}
	return bw.Flush()
}

func (cc *clientConn) answerRPC(f rpcwire.Frame) {
	defer cc.inflight.Done()
	resp, err := cc.p.rpcUp.call(f.Payload, cc.p.cfg.upstreamTimeout)
	if err != nil {
		resp = rpcwire.Frame{Status: rpcwire.StatusError, Payload: []byte("upstream: " + err.Error())}
	}
	resp.ID, resp.Kind = f.ID, rpcwire.KindResponse
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.c.SetWriteDeadline(time.Now().Add(cc.p.cfg.upstreamTimeout))
	rpcwire.Write(cc.c, resp)
}

// file dups the connection's socket for handing over. The caller closes
// both the file and the connection afterwards; the socket itself lives on
// in the process that received it.
func (cc *clientConn) file() (*os.File, error) {
	return cc.c.File()
}

// rpcUpstream is one multiplexed connection to the app's RPC port,
// dialled again when it breaks.
type rpcUpstream struct {
	addr string

	mu      sync.Mutex
	conn    net.Conn
	nextID  uint64
	pending map[uint64]chan rpcwire.Frame
	wmu     sync.Mutex
}

var errUpstreamBroke = errors.New("upstream rpc connection broke")

func (u *rpcUpstream) call(payload []byte, timeout time.Duration) (rpcwire.Frame, error) {
	ch := make(chan rpcwire.Frame, 1)
	u.mu.Lock()
	if u.conn == nil {
		c, err := net.DialTimeout("tcp", u.addr, timeout)
		if err != nil {
			u.mu.Unlock()
			return rpcwire.Frame{}, err
		}
		u.conn, u.pending = c, map[uint64]chan rpcwire.Frame{}
		go u.read(c, u.pending)
	}
	u.nextID++
	id, conn := u.nextID, u.conn
	u.pending[id] = ch
	u.mu.Unlock()

	u.wmu.Lock()
	conn.SetWriteDeadline(time.Now().Add(timeout))
	err := rpcwire.Write(conn, rpcwire.Frame{ID: id, Kind: rpcwire.KindRequest, Payload: payload})
	u.wmu.Unlock()
	if err != nil {
		conn.Close() // read() then fails every pending call
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case f, ok := <-ch:
		if !ok {
			return rpcwire.Frame{}, errUpstreamBroke
		}
		return f, nil
	case <-t.C:
		u.mu.Lock()
		delete(u.pending, id)
		u.mu.Unlock()
		return rpcwire.Frame{}, fmt.Errorf("no upstream answer within %s", timeout)
	}
}

func (u *rpcUpstream) read(c net.Conn, pending map[uint64]chan rpcwire.Frame) {
	br := bufio.NewReader(c)
	for {
		f, err := rpcwire.Read(br)
		u.mu.Lock()
		if err != nil {
			if u.conn == c {
				u.conn = nil
			}
			for id, ch := range pending {
				close(ch)
				delete(pending, id)
			}
			u.mu.Unlock()
			c.Close()
			return
		}
		ch, ok := pending[f.ID]
		delete(pending, f.ID)
		u.mu.Unlock()
		if ok {
			ch <- f
		}
	}
}

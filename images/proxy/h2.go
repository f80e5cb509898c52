package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// protoGRPC is the listener of HTTP/2 without TLS (gRPC's), forwarded to
// the app's gRPC port as HTTP/2.
const protoGRPC = "grpc"

// h2front serves the proxy's HTTP/2 connections. Unlike an HTTP/1.1 or
// RPC connection, an HTTP/2 one cannot be migrated to another process:
// its header compression tables and its streams live in this process's
// memory, and it has no moment between requests when nothing is on it.
// A handover (migrate or drain) therefore drains it: GOAWAY, the streams
// on it finish here, and the client opens its next connection to the new
// process, which holds the listener by then.
type h2front struct {
	p     *proxy
	base  *http.Server // only for its shutdown hook: GOAWAY on every connection
	h2    *http2.Server
	h     http.Handler
	wg    sync.WaitGroup
	open  atomic.Int64
	once  sync.Once
	close chan struct{} // closed when the drain period is over
}

func newH2Front(p *proxy) *h2front {
	up := &url.URL{Scheme: "http", Host: p.cfg.grpcUpstream}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.FlushInterval = -1 // server streams go on as they come
	rp.Transport = &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		p.upstreamFailed(err)
		w.WriteHeader(http.StatusBadGateway)
	}
	f := &h2front{p: p, base: &http.Server{}, h2: &http2.Server{}, close: make(chan struct{})}
	f.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Nodrop-Proxy", p.cfg.version)
		rp.ServeHTTP(w, r)
	})
	if err := http2.ConfigureServer(f.base, f.h2); err != nil {
		panic(err) // a fresh server with no TLS config cannot fail
	}
	return f
}

// serve serves one HTTP/2 connection until it ends.
func (f *h2front) serve(c net.Conn) {
	f.wg.Add(1)
	f.open.Add(1)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-f.close:
			c.Close() // the drain period is over: what is still on it is cut
		}
	}()
	go func() {
		defer f.wg.Done()
		defer f.open.Add(-1)
		defer close(done)
		f.h2.ServeConn(c, &http2.ServeConnOpts{BaseConfig: f.base, Handler: f.h})
		c.Close()
	}()
}

// drain sends GOAWAY on every connection and waits until each has ended,
// at most period; what is still open then is closed under its streams.
func (f *h2front) drain(period time.Duration) {
	n := f.open.Load()
	if n == 0 {
		return
	}
	start := time.Now()
	f.p.logf("h2_goaway", "connections", n)
	f.base.Shutdown(context.Background()) // its hook: GOAWAY on each HTTP/2 connection; it has no listener to wait for
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(period):
		f.p.logf("h2_drain_timeout", "connections", f.open.Load())
		f.once.Do(func() { close(f.close) })
		<-done
	}
	f.p.logf("h2_drained", "connections", n, "took_ms", time.Since(start).Milliseconds())
}

package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// listener is one port the proxy serves, by name in the upgrade protocol.
type listener struct {
	name      string // also its protocol: protoHTTP or protoRPC
	ln        *net.TCPListener
	accepting bool
}

type proxy struct {
	cfg config

	listeners []*listener
	acceptWG  sync.WaitGroup

	mu    sync.Mutex
	conns map[*clientConn]struct{}

	handingOver atomic.Bool // listeners closed on purpose
	draining    atomic.Bool // HTTP responses say Connection: close

	httpUp *http.Transport
	rpcUp  *rpcUpstream
	h2     *h2front

	// Requests the app did not answer (the proxy answered them 502),
	// since the last upstream_error line, and when that line was written
	// (Unix nanoseconds).
	upFails  atomic.Int64
	upLogged atomic.Int64
}

// upstreamFailed writes a lifecycle line for a request the app did not
// answer, which the proxy answers 502: the first at once, then at most
// one a second with how many there were since, so the timeline says why
// clients got 502 without a line per request.
func (p *proxy) upstreamFailed(err error) {
	p.upFails.Add(1)
	now, last := time.Now().UnixNano(), p.upLogged.Load()
	if last != 0 && now-last < int64(time.Second) || !p.upLogged.CompareAndSwap(last, now) {
		return
	}
	p.logf("upstream_error", "error", err.Error(), "requests", p.upFails.Swap(0))
}

func newProxy(cfg config) *proxy {
	p := &proxy{
		cfg:   cfg,
		conns: map[*clientConn]struct{}{},
		httpUp: &http.Transport{
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		rpcUp: &rpcUpstream{addr: cfg.rpcUpstream},
	}
	p.h2 = newH2Front(p)
	return p
}

func (p *proxy) logf(event string, fields ...any) { logEvent(p.cfg, event, fields...) }

// listen opens the proxy's ports that were not handed over.
func (p *proxy) listen() error {
	want := []struct{ name, addr string }{{protoHTTP, p.cfg.listen}, {protoRPC, p.cfg.rpcListen}, {protoGRPC, p.cfg.grpcListen}}
	for _, w := range want {
		if w.addr == "" || p.listener(w.name) != nil {
			continue
		}
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			return fmt.Errorf("listening for %s on %s: %w", w.name, w.addr, err)
		}
		p.listeners = append(p.listeners, &listener{name: w.name, ln: ln.(*net.TCPListener)})
		p.logf("listening", "protocol", w.name, "addr", ln.Addr().String())
	}
	return nil
}

func (p *proxy) listener(name string) *listener {
	for _, l := range p.listeners {
		if l.name == name {
			return l
		}
	}
	return nil
}

func (p *proxy) startAccepting() {
	for _, l := range p.listeners {
		if l.accepting {
			continue
		}
		l.accepting = true
		p.acceptWG.Add(1)
		go func() {
			defer p.acceptWG.Done()
			for {
				c, err := l.ln.AcceptTCP()
				if err != nil {
					if !p.handingOver.Load() {
						p.logf("accept_error", "protocol", l.name, "error", err.Error())
					}
					return
				}
				if l.name == protoGRPC {
					p.h2.serve(c)
					continue
				}
				p.adopt(c, l.name, nil)
			}
		}()
	}
}

// adopt serves a connection, fresh or handed over with its pending bytes.
func (p *proxy) adopt(c *net.TCPConn, proto string, pending []byte) *clientConn {
	cc := &clientConn{p: p, c: c, proto: proto, pending: pending, done: make(chan struct{})}
	p.mu.Lock()
	p.conns[cc] = struct{}{}
	p.mu.Unlock()
	go func() {
		cc.serve()
		if cc.end != endMigrate {
			cc.inflight.Wait()
			c.Close()
			p.mu.Lock()
			delete(p.conns, cc)
			p.mu.Unlock()
		}
	}()
	return cc
}

func (p *proxy) snapshot() []*clientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*clientConn, 0, len(p.conns))
	for cc := range p.conns {
		out = append(out, cc)
	}
	return out
}

// stopAccepting closes this process's copies of the listeners and waits
// for the accept loops, so every connection it accepted is registered.
// The sockets stay open in the process they were handed to: connections
// still in the accept queue go to it.
func (p *proxy) stopAccepting() {
	p.handingOver.Store(true)
	for _, l := range p.listeners {
		l.ln.Close()
	}
	p.acceptWG.Wait()
}

// takeOver asks the process at path for its listeners and connections.
// ok is false when no process listens there.
func (p *proxy) takeOver(path string) (bool, error) {
	c, ok, err := dialControl(path)
	if err != nil || !ok {
		return false, err
	}
	defer c.c.Close()
	c.c.SetDeadline(time.Now().Add(p.cfg.upgradeTimeout))
	start := time.Now()
	p.logf("takeover_start", "from", path)
	if err := c.send(message{Op: "takeover", Version: p.cfg.version, PID: os.Getpid()}); err != nil {
		return false, err
	}
	m, files, err := c.expect("listeners")
	if err != nil {
		return false, err
	}
	if len(files) != len(m.Names) {
		closeAll(files)
		return false, fmt.Errorf("got %d listener FDs for %d names", len(files), len(m.Names))
	}
	for i, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("listener %s from FD: %w", m.Names[i], err)
		}
		p.listeners = append(p.listeners, &listener{name: m.Names[i], ln: ln.(*net.TCPListener)})
	}
	p.logf("listeners_received", "names", m.Names, "from_pid", m.PID, "mode", m.Mode)
	p.startAccepting()
	if err := c.send(message{Op: "accepting"}); err != nil {
		return true, err
	}
	p.logf("accepting", "inherited", len(files))
	adopted, bytes := 0, 0
	for {
		m, files, err := c.recv()
		if err != nil {
			return true, fmt.Errorf("receiving connections: %w", err)
		}
		if m.Op == "done" {
			break
		}
		if m.Op != "conn" || len(files) != 1 {
			closeAll(files)
			return true, fmt.Errorf("receiving connections: unexpected %q with %d FDs", m.Op, len(files))
		}
		fc, err := net.FileConn(files[0])
		files[0].Close()
		if err != nil {
			return true, fmt.Errorf("connection from FD: %w", err)
		}
		p.adopt(fc.(*net.TCPConn), m.Proto, m.Pending)
		adopted++
		bytes += len(m.Pending)
	}
	c.send(message{Op: "bye"})
	p.logf("takeover_done", "adopted_connections", adopted, "pending_bytes", bytes, "took_ms", time.Since(start).Milliseconds())
	return true, nil
}

// handOver serves one takeover request on the control connection c. On
// success this process no longer accepts; in migrate mode it no longer
// holds any connection either.
func (p *proxy) handOver(c ctrl) error {
	defer c.c.Close()
	c.c.SetDeadline(time.Now().Add(p.cfg.upgradeTimeout))
	m, _, err := c.expect("takeover")
	if err != nil {
		return err
	}
	p.logf("handover_start", "to_version", m.Version, "to_pid", m.PID, "mode", p.cfg.upgrade)
	names := make([]string, len(p.listeners))
	files := make([]*os.File, len(p.listeners))
	for i, l := range p.listeners {
		f, err := l.ln.File()
		if err != nil {
			closeAll(files[:i])
			return fmt.Errorf("listener %s as a file: %w", l.name, err)
		}
		names[i], files[i] = l.name, f
	}
	err = c.send(message{Op: "listeners", Names: names, PID: os.Getpid(), Mode: p.cfg.upgrade}, files...)
	closeAll(files)
	if err != nil {
		return err
	}
	if _, _, err := c.expect("accepting"); err != nil {
		return err
	}
	p.stopAccepting()
	p.logf("listeners_handed_over", "names", names)

	if p.cfg.upgrade == upgradeDrain {
		if err := c.send(message{Op: "done"}); err != nil {
			return err
		}
		c.expect("bye")
		p.drain()
		return nil
	}
	// HTTP/2 connections cannot move: they drain beside the migration.
	h2done := make(chan struct{})
	go func() { p.h2.drain(p.cfg.drainPeriod); close(h2done) }()
	defer func() { <-h2done }()

	start := time.Now()
	conns := p.snapshot()
	p.logf("migration_start", "connections", len(conns))
	for _, cc := range conns {
		cc.quiesce.Store(true)
		cc.interrupt()
	}
	migrated, bytes := 0, 0
	for _, cc := range conns {
		<-cc.done
		if cc.end != endMigrate {
			continue // closed by its client meanwhile
		}
		cc.inflight.Wait() // RPC answers still being written
		f, err := cc.file()
		if err != nil {
			return fmt.Errorf("connection as a file: %w", err)
		}
		err = c.send(message{Op: "conn", Proto: cc.proto, Pending: cc.pending}, f)
		f.Close()
		if err != nil {
			return err
		}
		// Only this process's descriptor closes: no FIN, no RST, the
		// socket lives on in the new process.
		cc.c.Close()
		migrated++
		bytes += len(cc.pending)
	}
	if err := c.send(message{Op: "done", Migrated: migrated}); err != nil {
		return err
	}
	if _, _, err := c.expect("bye"); err != nil {
		return err
	}
	p.logf("migration_end", "migrated_connections", migrated, "pending_bytes", bytes, "took_ms", time.Since(start).Milliseconds())
	return nil
}

// drain empties this process of connections after it stopped accepting.
//
// connection-close (right): every HTTP response says Connection: close for
// the drain period, so each client moves on its own; what is left is
// closed after it. RPC cannot be told to move: its connections serve
// until the period is over and then close under their clients.
//
// close-idle (wrong): every connection closes at its next request
// boundary, without telling the client, racing with requests on the wire.
func (p *proxy) drain() {
	start := time.Now()
	conns := p.snapshot()
	p.logf("drain_start", "connections", len(conns), "style", p.cfg.drainStyle, "period", p.cfg.drainPeriod.String())
	h2done := make(chan struct{})
	go func() { p.h2.drain(p.cfg.drainPeriod); close(h2done) }()
	if p.cfg.drainStyle == drainCloseIdle {
		for _, cc := range conns {
			cc.closing.Store(true)
			cc.interrupt()
		}
	} else {
		p.draining.Store(true)
		deadline := time.Now().Add(p.cfg.drainPeriod)
		for time.Now().Before(deadline) && len(p.snapshot()) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		for _, cc := range p.snapshot() {
			cc.closing.Store(true)
			cc.interrupt()
		}
	}
	for _, cc := range conns {
		<-cc.done
		cc.inflight.Wait()
	}
	<-h2done
	p.logf("drain_end", "connections", len(conns), "took_ms", time.Since(start).Milliseconds())
}

// serveControl answers takeover requests until one succeeds.
func (p *proxy) serveControl(ln *net.UnixListener) error {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return fmt.Errorf("upgrade socket: %w", err)
		}
		if err := p.handOver(ctrl{c}); err != nil {
			if errors.Is(err, errPeerClosed) && !p.handingOver.Load() {
				continue // a readiness check (proxy wait-serving) connected and left
			}
			if p.handingOver.Load() {
				// Past the point of no return: the listeners are gone.
				return fmt.Errorf("handing over: %w", err)
			}
			p.logf("handover_failed", "error", err.Error())
			continue
		}
		ln.Close()
		return nil
	}
}

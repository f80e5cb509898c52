package loadgen

import (
	"container/list"
	"context"
	"io"
	"net/http"
	"sync"
)

// fifoPool is kept-alive load's connection pool. Each slot is a transport
// that holds at most one connection per host; a request takes the slot
// that has waited longest (least recently used first), opens a new slot
// only when every open one is busy, and waits for one once there are
// MaxConns.
//
// Go's own pool reuses the most recently used idle connection. Under a
// latency spike it grows, and afterwards only its newest connections carry
// requests while the others sit idle until the idle timeout closes them.
// Which connections survive a rollout then depends on how loaded the
// machine was: a connection to a pod that is about to be killed may have
// been shed, idle, before the kill, and a configuration that cuts
// kept-alive connections loses nothing that run. Taking the slots in turn
// keeps every open connection busy, so each one meets whatever the server
// does to it, whatever the machine's load.
type fifoPool struct {
	newSlot func() *http.Transport
	max     int

	mu    sync.Mutex
	hosts map[string]*hostSlots
}

// hostSlots are one target host's slots.
type hostSlots struct {
	all     []*http.Transport
	free    list.List // of *http.Transport, least recently used first
	waiters list.List // of chan *http.Transport, first come first served
}

func newFIFOPool(max int, newSlot func() *http.Transport) *fifoPool {
	return &fifoPool{newSlot: newSlot, max: max, hosts: make(map[string]*hostSlots)}
}

// RoundTrip sends req on a slot of its host and holds that slot until the
// response body is read to its end or closed.
func (p *fifoPool) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	slot, err := p.acquire(req.Context(), host)
	if err != nil {
		return nil, err
	}
	resp, err := slot.RoundTrip(req)
	if err != nil {
		p.release(host, slot)
		return nil, err
	}
	resp.Body = &slotBody{ReadCloser: resp.Body, release: func() { p.release(host, slot) }}
	return resp, nil
}

func (p *fifoPool) acquire(ctx context.Context, host string) (*http.Transport, error) {
	p.mu.Lock()
	h := p.hosts[host]
	if h == nil {
		h = &hostSlots{}
		p.hosts[host] = h
	}
	if e := h.free.Front(); e != nil {
		h.free.Remove(e)
		p.mu.Unlock()
		return e.Value.(*http.Transport), nil
	}
	if len(h.all) < p.max {
		slot := p.newSlot()
		h.all = append(h.all, slot)
		p.mu.Unlock()
		return slot, nil
	}
	ch := make(chan *http.Transport, 1)
	w := h.waiters.PushBack(ch)
	p.mu.Unlock()
	select {
	case slot := <-ch:
		return slot, nil
	case <-ctx.Done():
		p.mu.Lock()
		if w.Value != nil { // still waiting: nobody will hand it a slot
			h.waiters.Remove(w)
			w.Value = nil
			p.mu.Unlock()
			return nil, ctx.Err()
		}
		p.mu.Unlock()
		// A slot was handed over as the deadline passed: pass it on.
		p.release(host, <-ch)
		return nil, ctx.Err()
	}
}

func (p *fifoPool) release(host string, slot *http.Transport) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hosts[host]
	if w := h.waiters.Front(); w != nil {
		h.waiters.Remove(w)
		ch := w.Value.(chan *http.Transport)
		w.Value = nil
		ch <- slot
		return
	}
	h.free.PushBack(slot)
}

// CloseIdleConnections closes every slot's idle connection.
func (p *fifoPool) CloseIdleConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		for _, slot := range h.all {
			slot.CloseIdleConnections()
		}
	}
}

// slotBody gives its slot back once the body has been read or closed.
type slotBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *slotBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

package main

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodrop-dev/nodrop/rpcwire"
)

// rpcServer answers rpcwire requests with "<pod> <version>", each in its
// own goroutine, so responses on one connection may overtake each other.
type rpcServer struct {
	cfg   config
	ready *atomic.Bool

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

func (s *rpcServer) serve(ln net.Listener) {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *rpcServer) handle(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var wmu sync.Mutex
	r := bufio.NewReader(c)
	answer := []byte(s.cfg.pod + " " + s.cfg.version)
	for {
		f, err := rpcwire.Read(r)
		if err != nil || f.Kind != rpcwire.KindRequest {
			return
		}
		go func(id uint64) {
			resp := rpcwire.Frame{ID: id, Kind: rpcwire.KindResponse, Payload: answer}
			if !s.ready.Load() {
				resp.Status, resp.Payload = rpcwire.StatusError, []byte("starting")
			} else if s.cfg.workTime > 0 {
				time.Sleep(s.cfg.workTime)
			}
			wmu.Lock()
			defer wmu.Unlock()
			rpcwire.Write(c, resp)
		}(f.ID)
	}
}

// close stops accepting and closes every connection.
func (s *rpcServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
}

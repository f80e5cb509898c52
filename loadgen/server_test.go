package loadgen_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// action is what the test server does with its n-th request (1-based,
// counted across all connections).
type action int

const (
	respond200 action = iota
	respond503
	resetConn   // read the request, then RST the connection
	closeConn   // read the request, then FIN without a response
	stall       // read the request, then answer only after stallFor
	partialBody // send headers and half the body, then FIN
	holdReset   // read the request, work on it for holdFor, then RST: a killed server
	holdClose   // read the request, work on it for holdFor, then FIN without a response
)

const holdFor = 50 * time.Millisecond

const stallFor = 1500 * time.Millisecond

// rawServer is an HTTP/1.1 server on loopback written on raw TCP, so a
// test decides exactly how each request is answered or dropped.
type rawServer struct {
	ln      net.Listener
	plan    func(n int64) action
	n       atomic.Int64
	dropped atomic.Int64 // requests answered by anything but 200
	wg      sync.WaitGroup
}

func startRawServer(t *testing.T, plan func(n int64) action) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, plan: plan}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) URL() string { return "http://" + s.ln.Addr().String() + "/" }

func (s *rawServer) serve() {
	defer s.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			s.handle(c.(*net.TCPConn))
		}()
	}
}

func (s *rawServer) handle(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		n := s.n.Add(1)
		act := s.plan(n)
		if act != respond200 {
			s.dropped.Add(1)
		}
		switch act {
		case respond200:
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Nodrop-Pod: raw-%d\r\nX-Nodrop-Version: v1\r\n\r\nok", n%2)
		case respond503:
			fmt.Fprint(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
		case resetConn:
			c.SetLinger(0)
			return
		case closeConn:
			return
		case stall:
			time.Sleep(stallFor)
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		case holdReset:
			time.Sleep(holdFor)
			c.SetLinger(0)
			return
		case holdClose:
			time.Sleep(holdFor)
			return
		case partialBody:
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
			return
		}
	}
}

// every returns a plan that applies act to every k-th request.
func every(k int64, act action) func(int64) action {
	return func(n int64) action {
		if n%k == 0 {
			return act
		}
		return respond200
	}
}

// closedPortURL returns a loopback URL nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/"
}

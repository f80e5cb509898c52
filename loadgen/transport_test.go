package loadgen

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// pair is a loopback TCP connection: the client's end as a fresh
// connection of the load generator (RST on close, awaiting the server's
// FIN), and the server's end.
func pair(t *testing.T) (*trackedConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	c.(*net.TCPConn).SetLinger(0)
	return &trackedConn{Conn: c, awaitFIN: finWait}, s.(*net.TCPConn)
}

// A fresh connection's RST follows the server's FIN, never crosses it:
// Close waits for the FIN a server sends behind its response, and the
// server then sees the reset.
func TestFreshConnectionResetsOnlyAfterTheServersFIN(t *testing.T) {
	c, s := pair(t)
	const finAfter = 30 * time.Millisecond
	go func() {
		s.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		time.Sleep(finAfter)
		s.CloseWrite()
	}()
	buf := make([]byte, 128)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Close()
	if took := time.Since(start); took < finAfter-5*time.Millisecond || took >= finWait {
		t.Fatalf("Close took %s: want it to wait for the FIN sent %s after the response, and no longer", took, finAfter)
	}
	s.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := s.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the server read %v, want the client's reset", err)
	}
	if c.failure() != nil {
		t.Fatalf("the wait for the FIN counted as the connection's failure: %v", c.failure())
	}
}

// A server that keeps the connection open costs each close finWait, no
// more; a connection that failed, or that is being read, is reset at
// once.
func TestFreshConnectionCloseIsBounded(t *testing.T) {
	c, _ := pair(t)
	start := time.Now()
	c.Close()
	if took := time.Since(start); took < finWait-5*time.Millisecond || took > finWait+200*time.Millisecond {
		t.Fatalf("Close took %s against a server that never closes, want about %s", took, finWait)
	}

	c, _ = pair(t)
	c.readErr = io.ErrUnexpectedEOF
	start = time.Now()
	c.Close()
	if took := time.Since(start); took > finWait/2 {
		t.Fatalf("Close of a failed connection took %s, want no wait", took)
	}

	c, _ = pair(t)
	read := make(chan error)
	go func() {
		_, err := c.Read(make([]byte, 8))
		read <- err
	}()
	for c.reading.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start = time.Now()
	c.Close()
	if took := time.Since(start); took > finWait/2 {
		t.Fatalf("Close with a read in progress took %s, want no wait", took)
	}
	if err := <-read; err == nil {
		t.Fatal("the read in progress went on after Close")
	}
}

package main

import (
	"net"
	"testing"
)

// An haproxy-sf reload is stamped when the old process's listening socket
// closes: the sockets listening on a port are read from /proc/net.
func TestListeningSocketsSeesAListenerClose(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	before, err := listeningSockets(port)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 1 {
		t.Fatalf("listening on %d: found %d sockets, want 1", port, len(before))
	}
	if closedAll(port, before) {
		t.Fatal("closedAll with the listener still open")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !closedAll(port, before) {
		t.Fatal("closedAll false after the listener closed")
	}
}

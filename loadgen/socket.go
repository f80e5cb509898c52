package loadgen

import (
	"context"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// A connection attempt that goes unanswered is known to the node's
// conntrack table only by the client's port, and net.Dialer closes the
// socket of a failed attempt without saying which port the kernel gave
// it. keepSocket holds a second descriptor of each dial's socket, so the
// port can still be read once the attempt has failed; socketRef.port
// reads it and lets the descriptor go.

// socketKey carries a dial's socketRef to keepSocket.
type socketKey struct{}

// socketRef is a duplicate descriptor of one dial's socket, and the
// port read from it.
type socketRef struct {
	mu    sync.Mutex
	fd    int // 0: none
	local int
}

// keepSocket is a net.Dialer ControlContext: it runs before connect.
func keepSocket(ctx context.Context, _, _ string, c syscall.RawConn) error {
	ref, ok := ctx.Value(socketKey{}).(*socketRef)
	if !ok {
		return nil
	}
	return c.Control(func(fd uintptr) {
		dup, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return // no port for this one; the dial goes on
		}
		ref.mu.Lock()
		if ref.fd != 0 { // a second address tried: keep the last
			unix.Close(ref.fd)
		}
		ref.fd, ref.local = dup, 0
		ref.mu.Unlock()
	})
}

// port is the socket's local port (0 if unknown). A request's deadline
// can end it while its dial goes on, so it may be read before the dial
// is done.
func (r *socketRef) port() int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.read()
}

func (r *socketRef) read() int {
	if r.local != 0 || r.fd == 0 {
		return r.local
	}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		return 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		r.local = a.Port
	case *unix.SockaddrInet6:
		r.local = a.Port
	}
	return r.local
}

// release reads the port and closes the duplicate, once the dial is
// done: the socket itself lives on in the connection, if any.
func (r *socketRef) release() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.read()
	if r.fd != 0 {
		unix.Close(r.fd)
		r.fd = 0
	}
	return p
}

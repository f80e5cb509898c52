package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// The upgrade protocol runs over a Unix SOCK_SEQPACKET socket, one JSON
// message per packet, file descriptors beside it as SCM_RIGHTS:
//
//	new → old  {"op":"takeover"}
//	old → new  {"op":"listeners","names":[…]}            + one FD per listener
//	new → old  {"op":"accepting"}                          the new process accepts; the old one stops
//	old → new  {"op":"conn","proto":…,"pending":…}         + the connection's FD (migrate mode, per connection)
//	old → new  {"op":"done","migrated":N}
//	new → old  {"op":"bye"}
//
// "pending" carries the bytes the old process had read from the
// connection but not yet used (a request cut in two by the handoff).
type message struct {
	Op       string   `json:"op"`
	Version  string   `json:"version,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Names    []string `json:"names,omitempty"`
	Proto    string   `json:"proto,omitempty"`
	Pending  []byte   `json:"pending,omitempty"`
	Migrated int      `json:"migrated,omitempty"`
	Mode     string   `json:"mode,omitempty"`
}

var errPeerClosed = errors.New("upgrade peer closed the control socket")

// maxPacket bounds one message: JSON plus base64 of a connection's
// pending bytes (at most maxPending).
const maxPacket = 4*maxPending/3 + 4096

// ctrl is one end of the upgrade conversation.
type ctrl struct{ c *net.UnixConn }

func (c ctrl) send(m message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("sending %s: %w", m.Op, err)
	}
	return nil
}

// recv reads one message and the files that came with it.
func (c ctrl) recv() (message, []*os.File, error) {
	buf := make([]byte, maxPacket)
	oob := make([]byte, syscall.CmsgSpace(8*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	if errors.Is(err, io.EOF) {
		return message{}, nil, errPeerClosed
	}
	if err != nil {
		return message{}, nil, err
	}
	if n == 0 {
		return message{}, nil, errPeerClosed
	}
	if flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0 {
		return message{}, nil, errors.New("upgrade message truncated")
	}
	var files []*os.File
	if oobn > 0 {
		scms, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, fmt.Errorf("parsing SCM_RIGHTS: %w", err)
		}
		for _, scm := range scms {
			fds, err := syscall.ParseUnixRights(&scm)
			if err != nil {
				return message{}, nil, fmt.Errorf("parsing SCM_RIGHTS: %w", err)
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "handed-over"))
			}
		}
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return message{}, nil, fmt.Errorf("upgrade message: %w", err)
	}
	return m, files, nil
}

// expect reads one message and fails unless it is op.
func (c ctrl) expect(op string) (message, []*os.File, error) {
	m, files, err := c.recv()
	if err != nil {
		return m, nil, fmt.Errorf("waiting for %s: %w", op, err)
	}
	if m.Op != op {
		closeAll(files)
		return m, nil, fmt.Errorf("waiting for %s: got %q", op, m.Op)
	}
	return m, files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// dialControl connects to an upgrade socket; ok is false when nothing
// listens there (no process to take over from).
func dialControl(path string) (ctrl, bool, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return ctrl{}, false, nil
		}
		return ctrl{}, false, fmt.Errorf("connecting to upgrade socket %s: %w", path, err)
	}
	return ctrl{c}, true, nil
}

// listenControl binds the upgrade socket at path, replacing a stale one
// (the file of a process that has handed over or died).
func listenControl(path string) (*net.UnixListener, error) {
	// A scratch image has no /tmp.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("upgrade socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale upgrade socket: %w", err)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("binding upgrade socket: %w", err)
	}
	// The file belongs to whoever holds the socket now; closing must not
	// remove a successor's file.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

// Package rpcwire is nodrop's small multiplexed RPC protocol: it stands in
// for Dubbo, SOFARPC and similar long-lived binary protocols, which is why
// it has no way to say "close" or "go away". A server that wants a client
// to move can only close the connection, and every request the client has
// on the wire at that moment is lost. That is the reason hot-upgrading
// proxies migrate connections instead of draining them.
//
// A connection carries frames in both directions, many requests in flight
// at once, answered in any order and matched by ID:
//
//	uint32  length   big endian, bytes after this field (10 + payload)
//	uint64  id       chosen by the client, echoed in the response
//	uint8   kind     1 request, 2 response
//	uint8   status   responses: 0 ok, anything else an error
//	[]byte  payload  at most MaxPayload bytes
//
// The sample app answers a request with the payload "<pod> <version>".
package rpcwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame kinds.
const (
	KindRequest  uint8 = 1
	KindResponse uint8 = 2
)

// Response statuses.
const (
	StatusOK    uint8 = 0
	StatusError uint8 = 1
)

const (
	headerLen = 14 // length + id + kind + status
	// MaxPayload bounds a frame's payload, so a corrupt length cannot make
	// a reader allocate without limit.
	MaxPayload = 1 << 20
)

// ErrMalformed marks a frame that breaks the format.
var ErrMalformed = errors.New("malformed rpc frame")

// Frame is one request or response.
type Frame struct {
	ID      uint64
	Kind    uint8
	Status  uint8
	Payload []byte
}

// Append appends f's encoding to b.
func (f Frame) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(headerLen-4+len(f.Payload)))
	b = binary.BigEndian.AppendUint64(b, f.ID)
	b = append(b, f.Kind, f.Status)
	return append(b, f.Payload...)
}

// Write writes f to w in one call.
func Write(w io.Writer, f Frame) error {
	_, err := w.Write(f.Append(make([]byte, 0, headerLen+len(f.Payload))))
	return err
}

// Split reports how many bytes at the start of b make one whole frame, or
// 0 when b holds only part of one. It lets a reader keep bytes it has read
// but not yet used, for example to hand them to another process.
func Split(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	n := int(binary.BigEndian.Uint32(b))
	if n < headerLen-4 || n > headerLen-4+MaxPayload {
		return 0, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	if len(b) < 4+n {
		return 0, nil
	}
	return 4 + n, nil
}

// Parse decodes one whole frame as measured by Split. The payload aliases b.
func Parse(b []byte) (Frame, error) {
	n, err := Split(b)
	if err != nil {
		return Frame{}, err
	}
	if n == 0 || n != len(b) {
		return Frame{}, fmt.Errorf("%w: %d bytes is not one whole frame", ErrMalformed, len(b))
	}
	f := Frame{ID: binary.BigEndian.Uint64(b[4:]), Kind: b[12], Status: b[13], Payload: b[headerLen:]}
	if f.Kind != KindRequest && f.Kind != KindResponse {
		return Frame{}, fmt.Errorf("%w: kind %d", ErrMalformed, f.Kind)
	}
	return f, nil
}

// Read reads one frame from r. A connection closed between frames is
// io.EOF; closed inside one, io.ErrUnexpectedEOF.
func Read(r io.Reader) (Frame, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return Frame{}, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < headerLen-4 || n > headerLen-4+MaxPayload {
		return Frame{}, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	buf := make([]byte, 4+n)
	copy(buf, hdr[:4])
	if _, err := io.ReadFull(r, buf[4:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Parse(buf)
}

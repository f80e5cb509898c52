package rpcwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTripAndSplit(t *testing.T) {
	var buf bytes.Buffer
	frames := []Frame{
		{ID: 1, Kind: KindRequest, Payload: []byte("nodrop")},
		{ID: 1<<63 + 5, Kind: KindResponse, Status: StatusError, Payload: nil},
	}
	for _, f := range frames {
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	// Every prefix short of the first frame is "not yet whole".
	first := 14 + len("nodrop")
	for i := range first {
		if n, err := Split(b[:i]); n != 0 || err != nil {
			t.Fatalf("Split of %d bytes = %d, %v; want 0, nil", i, n, err)
		}
	}
	if n, err := Split(b); n != first || err != nil {
		t.Fatalf("Split = %d, %v; want %d", n, err, first)
	}
	for _, want := range frames {
		got, err := Read(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.Kind != want.Kind || got.Status != want.Status || !bytes.Equal(got.Payload, want.Payload) {
			t.Errorf("read %+v, want %+v", got, want)
		}
	}
	if _, err := Read(&buf); err != io.EOF {
		t.Errorf("read at end: %v, want io.EOF", err)
	}
}

func TestMalformedAndCutFrames(t *testing.T) {
	if _, err := Split([]byte{0xff, 0xff, 0xff, 0xff}); !errors.Is(err, ErrMalformed) {
		t.Errorf("huge length: %v", err)
	}
	if _, err := Split([]byte{0, 0, 0, 3}); !errors.Is(err, ErrMalformed) {
		t.Errorf("length below the header: %v", err)
	}
	bad := Frame{ID: 1, Kind: 9}.Append(nil)
	if _, err := Parse(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("unknown kind: %v", err)
	}
	whole := Frame{ID: 1, Kind: KindRequest, Payload: []byte("abc")}.Append(nil)
	if _, err := Read(bytes.NewReader(whole[:len(whole)-1])); err != io.ErrUnexpectedEOF {
		t.Errorf("frame cut short: %v, want io.ErrUnexpectedEOF", err)
	}
}

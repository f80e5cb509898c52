package loadgen

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The transport's words for a connection closed under an RPC, as grpc-go
// writes them, are EOF; a refused dial is refused; the server's own
// status is its answer.
func TestGRPCClass(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		msg      string
		answered bool
		want     Class
	}{
		{codes.Unavailable, `closing transport due to: connection error: desc = "error reading from server: EOF", received prior goaway: code: NO_ERROR, debug data: "graceful_stop"`, false, EOF},
		{codes.Unavailable, "error reading from server: EOF", false, EOF},
		{codes.Unavailable, "the connection is draining due to GOAWAY", false, EOF},
		{codes.Unavailable, "transport is closing", false, EOF},
		{codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 172.19.0.2:31000: connect: connection refused"`, false, Refused},
		{codes.Unavailable, "app starting", true, HTTP5xx},
		{codes.DeadlineExceeded, "context deadline exceeded", false, Timeout},
		{codes.Internal, "stream terminated by RST_STREAM with error code: INTERNAL_ERROR", false, Reset},
		{codes.Unimplemented, "unknown method", true, HTTPOther},
	} {
		if got, _ := grpcClass(status.Error(tc.code, tc.msg), tc.answered); got != tc.want {
			t.Errorf("%s %q (answered %v): %s, want %s", tc.code, tc.msg, tc.answered, got, tc.want)
		}
	}
}

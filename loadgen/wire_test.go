package loadgen

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// An outcome crosses the stream whole: every field the accumulator
// reads comes back as it was (its error as its text), so a merged load
// is judged on what its generator saw.
func TestOutcomeCrossesTheStreamWhole(t *testing.T) {
	started := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	targets := []string{"http://10.0.0.1/", "http://10.0.0.2/"}
	at := started.Add(1500 * time.Millisecond)
	o := outcome{
		seq: 42, at: at, latency: 3 * time.Millisecond, sendLag: 80 * time.Microsecond,
		class: Reset, err: errors.New("read tcp: connection reset by peer"), status: 0,
		target: targets[1], pod: "web-1", version: "v2", conn: 3,
		reused: true, idle: true, idleFor: 7 * time.Millisecond,
		onConnAt: at.Add(10 * time.Microsecond), failedAt: at.Add(900 * time.Microsecond),
		retried: true, retryCount: true, goAwayRace: true, noConn: true, localPort: 40123, h2conn: 2,
	}
	got := toWire(o, started, targets).outcome(started, targets)
	if got.err == nil || got.err.Error() != o.err.Error() {
		t.Errorf("error %v; want %v", got.err, o.err)
	}
	got.err, o.err = nil, nil
	if !reflect.DeepEqual(got, o) {
		t.Errorf("after the stream:\n%+v\nwant\n%+v", got, o)
	}
	if !got.idleCloseRace() {
		t.Error("the idle-close race was lost on the way")
	}
	// An answered request keeps its zero times unknown.
	ok := outcome{seq: 1, at: at, latency: time.Millisecond, status: 200, target: targets[0]}
	if back := toWire(ok, started, targets).outcome(started, targets); !reflect.DeepEqual(back, ok) {
		t.Errorf("answered request after the stream: %+v; want %+v", back, ok)
	}
}

package lifecycle_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/lifecycle"
)

// What a Writer writes, Parse reads back, and the timeline shows the
// fields it names in their fixed order whatever order they were written in.
func TestWriteParseDetail(t *testing.T) {
	var out bytes.Buffer
	w := lifecycle.NewWriter(&out, lifecycle.Line{Pod: "web-1", Component: "proxy", Version: "v2", PID: 7})
	w.Write("migration_end", "took_ms", 12.5, "migrated_connections", 3, "socket", "/run/x.sock")
	w.Write("exit", "code", 0, "signal", "terminated")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("wrote %q", out.String())
	}
	l, ok := lifecycle.Parse([]byte(lines[0]))
	if !ok || l.Event != "migration_end" || l.Pod != "web-1" || l.PID != 7 || l.Fields["socket"] != "/run/x.sock" || l.At.IsZero() {
		t.Fatalf("parsed %+v, %v", l, ok)
	}
	if got, want := l.Detail(), "migration_end (component=proxy version=v2 pid=7 migrated_connections=3 took_ms=12.5)"; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
	l, _ = lifecycle.Parse([]byte(lines[1]))
	if got, want := l.Detail(), "exit (component=proxy version=v2 signal=terminated code=0 pid=7)"; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
}

// A line written by hand (nginx's upgrade script) is read as the Go
// writers' are; anything else in a log is not a lifecycle line.
func TestParseOnlyLifecycleLines(t *testing.T) {
	l, ok := lifecycle.Parse([]byte(`{"ts":"2026-12-05T12:00:01.123456789Z","event":"usr2","pid":1234567}`))
	if !ok || l.Detail() != "usr2 (pid=1234567)" || l.At.Nanosecond() != 123456789 {
		t.Errorf("parsed %+v (%q), %v", l, l.Detail(), ok)
	}
	for _, s := range []string{``, `hello`, `{"event":"x"}`, `{"ts":"yesterday","event":"x"}`, `{"ts":"2026-12-05T12:00:01Z"}`, `[1,2]`} {
		if _, ok := lifecycle.Parse([]byte(s)); ok {
			t.Errorf("%q read as a lifecycle line", s)
		}
	}
}

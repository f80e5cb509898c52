// Package lifecycle is the line a process writes for each step of its
// life (start, listening, ready, sigterm, draining, exit, a reload, a
// handover), so that nodrop places the step on a run's timeline at the
// moment the process itself saw it. nodrop's images write it and
// probes.Recorder reads it from every container's log; any app may write
// it too: one JSON object per line on stdout,
//
//	{"ts":"2026-12-05T12:00:01.5Z","event":"sigterm","pid":1,"signal":"terminated"}
//
// "ts" (RFC 3339 with nanoseconds) and "event" are required; "pod",
// "component", "version" and "pid" say who wrote it; any other field is
// kept, and those in Shown are printed on the timeline.
package lifecycle

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Line is one step of a process's life.
type Line struct {
	At        time.Time
	Event     string
	Pod       string
	Component string // which program of the pod: "proxy", an lb mode
	Version   string
	PID       int
	// Fields are the line's other fields, as JSON decodes them (numbers
	// are float64).
	Fields map[string]any
}

// Shown are the fields the timeline prints after the event's name, in
// this order (Line.Detail).
var Shown = []string{"component", "version", "signal", "code", "phase", "error", "pid",
	"migrated_connections", "adopted_connections", "connections", "pending_bytes", "took_ms", "backends", "requests"}

// MarshalJSON writes the line's fields as one JSON object.
func (l Line) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(l.Fields)+6)
	for k, v := range l.Fields {
		m[k] = v
	}
	m["ts"] = l.At.UTC().Format(time.RFC3339Nano)
	m["event"] = l.Event
	for k, v := range map[string]string{"pod": l.Pod, "component": l.Component, "version": l.Version} {
		if v != "" {
			m[k] = v
		}
	}
	if l.PID != 0 {
		m["pid"] = l.PID
	}
	return json.Marshal(m)
}

// Parse reads one line; ok is false for anything that is not a lifecycle
// line (other log output, a line without "ts" or "event").
func Parse(b []byte) (l Line, ok bool) {
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return Line{}, false
	}
	ts, _ := m["ts"].(string)
	l.Event, _ = m["event"].(string)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil || l.Event == "" {
		return Line{}, false
	}
	l.At = at
	l.Pod, _ = m["pod"].(string)
	l.Component, _ = m["component"].(string)
	l.Version, _ = m["version"].(string)
	if pid, isNum := m["pid"].(float64); isNum {
		l.PID = int(pid)
	}
	for _, k := range []string{"ts", "event", "pod", "component", "version", "pid"} {
		delete(m, k)
	}
	if len(m) > 0 {
		l.Fields = m
	}
	return l, true
}

// Detail is the line as the timeline prints it: the event's name and the
// Shown fields it has, "sigterm (version=v1 signal=terminated pid=1)".
func (l Line) Detail() string {
	var shown []string
	for _, k := range Shown {
		var v any
		switch k {
		case "component":
			v = nonEmpty(l.Component)
		case "version":
			v = nonEmpty(l.Version)
		case "pid":
			if l.PID != 0 {
				v = l.PID
			}
		default:
			v = l.Fields[k]
		}
		if v != nil {
			shown = append(shown, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if len(shown) == 0 {
		return l.Event
	}
	return l.Event + " (" + strings.Join(shown, " ") + ")"
}

func nonEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Writer writes a process's lines, each with who wrote it.
type Writer struct {
	mu  sync.Mutex
	out io.Writer
	who Line
}

// NewWriter writes to out (a process's stdout) lines that carry who's
// Pod, Component, Version and PID.
func NewWriter(out io.Writer, who Line) *Writer {
	return &Writer{out: out, who: Line{Pod: who.Pod, Component: who.Component, Version: who.Version, PID: who.PID}}
}

// Write writes one line, stamped now: event and its fields as key, value
// pairs ("signal", "terminated", "code", 0). A nil Writer writes nothing.
func (w *Writer) Write(event string, kv ...any) {
	w.WriteAt(time.Now(), event, kv...)
}

// WriteAt writes one line stamped at: for a step whose moment is known
// only once it is over (a reload that took effect before it returned).
func (w *Writer) WriteAt(at time.Time, event string, kv ...any) {
	if w == nil {
		return
	}
	l := w.who
	l.At, l.Event = at, event
	if len(kv) > 1 {
		l.Fields = make(map[string]any, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			l.Fields[fmt.Sprint(kv[i])] = kv[i+1]
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		b, _ = json.Marshal(Line{At: l.At, Event: event, Pod: l.Pod, Component: l.Component, Version: l.Version, PID: l.PID,
			Fields: map[string]any{"error": "fields not JSON: " + err.Error()}})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.out.Write(append(b, '\n'))
}

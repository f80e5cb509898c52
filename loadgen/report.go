package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// BucketWidth is the width of one timeline bucket.
const BucketWidth = 100 * time.Millisecond

// MaxLossDetails bounds how many lost requests a Report lists one by one;
// the counts stay exact beyond it.
const MaxLossDetails = 10000

// Response headers the sample apps set, counted per value when present.
const (
	PodHeader     = "X-Nodrop-Pod"
	VersionHeader = "X-Nodrop-Version"
)

// Report is the verdict of one load run.
type Report struct {
	Targets     []string  `json:"targets"`
	Method      string    `json:"method"`
	KeepAlive   bool      `json:"keepalive"`
	Strict      bool      `json:"strict"`
	RateTarget  int       `json:"rate_target"`
	Started     time.Time `json:"started"`
	DurationSec float64   `json:"duration_s"`

	Total        int           `json:"total"`
	OK           int           `json:"ok"`
	Lost         int           `json:"lost"`
	LostByClass  map[Class]int `json:"lost_by_class"`
	RateAchieved float64       `json:"rate_achieved"`
	// IdleCloseRace counts losses on a reused connection before any
	// response byte: the server closed a kept-alive connection while the
	// request was on the wire. They are lost, and named apart so "closes
	// idle connections badly" is not mistaken for "pod was killed".
	IdleCloseRace int `json:"idle_close_race"`
	// Retried counts requests net/http sent a second time (lenient mode
	// only; strict mode counts them as lost).
	Retried int `json:"retried"`

	// Long-lived mode: how many persistent connections, over which
	// protocol; how often the server closed one without losing a request
	// (HTTP Connection: close, or an RPC connection with nothing on the
	// wire) and the client opened another; how many broke with requests
	// on the wire.
	Connections       int    `json:"connections,omitempty"`
	Protocol          string `json:"protocol,omitempty"`
	Reconnects        int    `json:"reconnects"`
	BrokenConnections int    `json:"broken_connections"`

	Latency       Latency        `json:"latency"`
	Timeline      []Bucket       `json:"timeline"`
	FirstLoss     *time.Time     `json:"first_loss,omitempty"`
	LastLoss      *time.Time     `json:"last_loss,omitempty"`
	LongestOutage *Window        `json:"longest_outage,omitempty"`
	ByPod         map[string]int `json:"by_pod"`
	ByVersion     map[string]int `json:"by_version"`
	// Losses lists lost requests in the order they were sent, at most
	// MaxLossDetails of them.
	Losses          []Loss `json:"losses"`
	LossesTruncated bool   `json:"losses_truncated,omitempty"`
}

// Latency holds percentiles over every request, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Bucket is one BucketWidth of the timeline, by send time.
type Bucket struct {
	OffsetMs    int64         `json:"t_ms"`
	Sent        int           `json:"sent"`
	OK          int           `json:"ok"`
	Lost        int           `json:"lost"`
	LostByClass map[Class]int `json:"lost_by_class,omitempty"`
}

// Window is a run of consecutive lost requests.
type Window struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Requests int       `json:"requests"`
}

// Duration is how long the window lasted.
func (w Window) Duration() time.Duration { return w.End.Sub(w.Start) }

// Loss is one lost request.
type Loss struct {
	Seq        uint64    `json:"seq"`
	At         time.Time `json:"at"`
	LatencyMs  float64   `json:"latency_ms"`
	Class      Class     `json:"class"`
	Status     int       `json:"status,omitempty"`
	Error      string    `json:"error,omitempty"`
	Target     string    `json:"target"`
	ConnReused bool      `json:"conn_reused"`
	// GotResponseByte is whether any byte of a response had arrived.
	GotResponseByte bool   `json:"got_response_byte"`
	IdleCloseRace   bool   `json:"idle_close_race,omitempty"`
	Retried         bool   `json:"retried,omitempty"`
	Pod             string `json:"pod,omitempty"`
	// Conn is the connection it was sent on, from 1, in long-lived mode.
	Conn int `json:"conn,omitempty"`
}

// Lossless reports whether requests completed and none was lost.
func (r *Report) Lossless() bool { return r.Total > 0 && r.Lost == 0 }

// Mode names the connection mode.
func (r *Report) Mode() string {
	if r.Connections > 0 {
		return fmt.Sprintf("long-lived, %d %s connections, strict (a broken connection loses what it had on the wire)", r.Connections, r.Protocol)
	}
	mode := "fresh connections"
	if r.KeepAlive {
		mode = "keep-alive"
	}
	if r.Strict {
		return mode + ", strict"
	}
	return mode + ", lenient (net/http retries allowed)"
}

// DominantClass is the class with the most losses, or OK when none.
func (r *Report) DominantClass() Class {
	best := OK
	for _, c := range LossClasses {
		if r.LostByClass[c] > r.LostByClass[best] || (best == OK && r.LostByClass[c] > 0) {
			best = c
		}
	}
	return best
}

// Offset is t relative to the start of the run.
func (r *Report) Offset(t time.Time) time.Duration { return t.Sub(r.Started) }

// Summary is one line: what was sent and what was lost.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d ok, %d lost", r.Total, r.OK, r.Lost)
	if r.Lost > 0 {
		b.WriteString(" (")
		b.WriteString(r.classList(", "))
		b.WriteString(")")
	}
	return b.String()
}

func (r *Report) classList(sep string) string {
	var parts []string
	for _, c := range LossClasses {
		if n := r.LostByClass[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	return strings.Join(parts, sep)
}

// WriteTable writes a readable summary of the report.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	if r.Protocol == ProtocolRPC {
		row("targets", "%s", strings.Join(r.Targets, " "))
	} else {
		row("targets", "%s %s", r.Method, strings.Join(r.Targets, " "))
	}
	row("mode", "%s", r.Mode())
	row("requests", "%d in %.1fs, %.1f/s achieved (target %d/s)", r.Total, r.DurationSec, r.RateAchieved, r.RateTarget)
	row("ok", "%d", r.OK)
	lostPct := 0.0
	if r.Total > 0 {
		lostPct = 100 * float64(r.Lost) / float64(r.Total)
	}
	row("lost", "%d (%.3f%%)", r.Lost, lostPct)
	for _, c := range LossClasses {
		row("  "+string(c), "%d", r.LostByClass[c])
	}
	if r.IdleCloseRace > 0 {
		row("  idle-close race", "%d of the lost were on a reused connection before any response byte", r.IdleCloseRace)
	}
	if r.Connections > 0 {
		row("connections", "%d closed by the server with nothing lost and reopened, %d broke with requests on the wire", r.Reconnects, r.BrokenConnections)
	}
	if !r.Strict {
		row("retried", "%d (net/http re-sent them; strict mode counts them as lost)", r.Retried)
	}
	if r.FirstLoss != nil {
		row("first/last loss", "+%s / +%s", fmtOffset(r.Offset(*r.FirstLoss)), fmtOffset(r.Offset(*r.LastLoss)))
	}
	if o := r.LongestOutage; o != nil {
		row("longest outage", "%d consecutive requests lost, +%s to +%s (%s)", o.Requests,
			fmtOffset(r.Offset(o.Start)), fmtOffset(r.Offset(o.End)), o.Duration().Round(time.Millisecond))
	}
	row("latency", "p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms", r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	if len(r.ByPod) > 0 {
		row("served by pod", "%s", countList(r.ByPod))
	}
	if len(r.ByVersion) > 0 {
		row("served by version", "%s", countList(r.ByVersion))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Lost == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nlosses by 100 ms bucket (send time):")
	for _, b := range r.Timeline {
		if b.Lost == 0 {
			continue
		}
		var parts []string
		for _, c := range LossClasses {
			if n := b.LostByClass[c]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", c, n))
			}
		}
		fmt.Fprintf(w, "  +%-8s sent %-5d lost %-5d %s\n", fmtOffset(time.Duration(b.OffsetMs)*time.Millisecond), b.Sent, b.Lost, strings.Join(parts, ", "))
	}
	return nil
}

func fmtOffset(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func countList(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

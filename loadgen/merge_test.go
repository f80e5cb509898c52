package loadgen_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// emit runs Emit for cfg on a goroutine and returns its stream.
func emit(t *testing.T, ctx context.Context, cfg loadgen.Config) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(loadgen.Emit(ctx, cfg, pw))
	}()
	return pr
}

// Two generators, each sending half the load to its own server, merge
// into one report that counts every request once, with each loss named
// by the generator that sent it, and judges it as one run would be.
func TestMergeCountsEveryGeneratorsRequestsOnce(t *testing.T) {
	good := startRawServer(t, every(1000000, respond200))
	bad := startRawServer(t, every(10, respond503))
	ctx := context.Background()
	half := func(url string) loadgen.Config {
		return loadgen.Config{Targets: []string{url}, Rate: 200, Duration: time.Second}
	}
	r, err := loadgen.Merge(ctx, []loadgen.Source{{Name: "a", R: emit(t, ctx, half(good.URL()))}, {Name: "b", R: emit(t, ctx, half(bad.URL()))}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := int(good.n.Load() + bad.n.Load())
	if r.Total != seen || r.OK+r.Lost != r.Total {
		t.Fatalf("merged total %d (ok %d, lost %d); the servers saw %d", r.Total, r.OK, r.Lost, seen)
	}
	if want := int(bad.dropped.Load()); r.Lost != want || r.LostByClass[loadgen.HTTP5xx] != want || want == 0 {
		t.Errorf("lost %v; want the %d 503s of b's server", r.LostByClass, want)
	}
	for _, l := range r.Losses {
		if l.Generator != "b" || l.Target != bad.URL() {
			t.Fatalf("loss %+v: want generator b, target %s", l, bad.URL())
		}
	}
	if r.Verdict != loadgen.Lossy {
		t.Errorf("verdict %s (%v); want lossy", r.Verdict, r.NotJudged)
	}
	if r.RateTarget != 400 || len(r.Targets) != 2 {
		t.Errorf("merged load: %d a second to %v; want 400 to both servers", r.RateTarget, r.Targets)
	}
	if len(r.Generators) != 2 {
		t.Fatalf("generators %+v; want a and b", r.Generators)
	}
	for _, g := range r.Generators {
		if g.Problem != "" || g.RateTarget != 200 || g.Sent < 190 {
			t.Errorf("generator %+v: want 200 a second for a second, no problem", g)
		}
	}
	if a, b := r.Generators[0], r.Generators[1]; a.Name != "a" || b.Name != "b" || a.Lost != 0 || b.Lost != r.Lost {
		t.Errorf("generators %+v, %+v: want a losing nothing, b all %d", a, b, r.Lost)
	}
	if d := r.DurationSec; d < 0.9 || d > 2 {
		t.Errorf("merged duration %.2fs; want about the generators' second", d)
	}
}

// A generator whose stream ends before its end line (its pod deleted,
// its log cut) makes the merged load not judged, and the reason names it;
// so does a stream nodrop cannot read.
func TestMergeOfACutStreamIsNotJudged(t *testing.T) {
	srv := startRawServer(t, every(1000000, respond200))
	ctx := context.Background()
	cfg := loadgen.Config{Targets: []string{srv.URL()}, Rate: 200, Duration: 500 * time.Millisecond}
	var whole bytes.Buffer
	if err := loadgen.Emit(ctx, cfg, &whole); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(whole.String(), "\n"), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], `{"end":`) {
		t.Fatalf("the stream's last line is %.80q; want its end", lines[len(lines)-1])
	}
	cut := strings.Join(lines[:len(lines)-1], "")
	for _, tc := range []struct {
		name, stream, reason string
	}{
		{"cut", cut, "generator b: its outcome stream ended before its load did"},
		{"not a stream", "hello\n", "generator b: unreadable outcome stream"},
		{"another version", `{"start":{"version":99}}` + "\n", "generator b: not an outcome stream of version 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := loadgen.Merge(ctx, []loadgen.Source{{Name: "a", R: strings.NewReader(whole.String())}, {Name: "b", R: strings.NewReader(tc.stream)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Verdict != loadgen.NotJudged || !strings.Contains(strings.Join(r.NotJudged, "; "), tc.reason) {
				t.Errorf("verdict %s, because %q; want not judged, because %q", r.Verdict, r.NotJudged, tc.reason)
			}
			if r.Generators[0].Problem != "" {
				t.Errorf("generator a: %q; its stream was whole", r.Generators[0].Problem)
			}
		})
	}
	// The whole stream alone, merged, is judged as Run would judge it.
	r, err := loadgen.Merge(ctx, []loadgen.Source{{Name: "a", R: strings.NewReader(whole.String())}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != loadgen.Lossless || r.Total < 95 {
		t.Errorf("one whole stream: %s, %d requests (%v); want lossless, about 100", r.Verdict, r.Total, r.NotJudged)
	}
}

// Generators that start some tens of milliseconds apart, as a pod's
// and another's do, still delivered the load: its rate is what each
// achieved, summed, not its requests over the span of both.
func TestMergeOfGeneratorsStartedApartIsDelivered(t *testing.T) {
	srv := startRawServer(t, every(1000000, respond200))
	ctx := context.Background()
	cfg := loadgen.Config{Targets: []string{srv.URL()}, Rate: 100, Duration: 500 * time.Millisecond}
	a := emit(t, ctx, cfg)
	time.Sleep(40 * time.Millisecond)
	b := emit(t, ctx, cfg)
	r, err := loadgen.Merge(ctx, []loadgen.Source{{Name: "a", R: a}, {Name: "b", R: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != loadgen.Lossless || r.RateAchieved < 0.99*200 || r.RateAchieved > 1.01*200 {
		t.Errorf("verdict %s (%v), %.1f a second of 200", r.Verdict, r.NotJudged, r.RateAchieved)
	}
}

func TestMergeNeedsAGenerator(t *testing.T) {
	if _, err := loadgen.Merge(context.Background(), nil, nil); err == nil {
		t.Error("Merge of no stream: no error")
	}
}

// Shares add up to the load: its rate, connections and streams.
func TestSplitAddsUpToTheLoad(t *testing.T) {
	for _, tc := range []struct {
		cfg loadgen.Config
		n   int
	}{
		{loadgen.Config{Rate: 1000}, 3},
		{loadgen.Config{Rate: 7, Connections: 4, Streams: 2}, 3},
		{loadgen.Config{Rate: 500}, 0},
	} {
		shares := loadgen.Split(tc.cfg, tc.n)
		rate, conns, streams := 0, 0, 0
		for _, s := range shares {
			rate, conns, streams = rate+s.Rate, conns+s.Connections, streams+s.Streams
			if tc.cfg.Connections > 0 && s.Connections < 1 {
				t.Errorf("%+v in %d: a share without a connection", tc.cfg, tc.n)
			}
		}
		if len(shares) != max(1, tc.n) || rate != tc.cfg.Rate || conns != tc.cfg.Connections || streams != tc.cfg.Streams {
			t.Errorf("%+v in %d: %d shares adding up to rate %d, %d connections, %d streams", tc.cfg, tc.n, len(shares), rate, conns, streams)
		}
	}
}

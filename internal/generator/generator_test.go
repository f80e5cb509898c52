package generator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/internal/witness"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// The test binary runs the witness the generator starts beside it.
func TestMain(m *testing.M) {
	if code, ok := witness.Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// The generator starts its share at the moment it is told, sends it
// until its stdin ends, and writes the outcome stream a merge reads
// whole; a load that is not one is bad input.
func TestGeneratorSendsItsShareUntilItsStdinEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	if _, ok := Helper([]string{"load"}); ok {
		t.Fatal("Helper took arguments that are not a generator's")
	}
	start, _ := json.Marshal(Start{Load: loadgen.Config{Targets: []string{srv.URL}, Rate: 100}, At: time.Now().Add(200 * time.Millisecond)})
	stdinR, stdinW := io.Pipe()
	var out, errOut bytes.Buffer
	done := make(chan int)
	// errOut is read only once run returned.
	began := time.Now()
	go func() { done <- run(context.Background(), stdinR, &out, &errOut) }()
	stdinW.Write(append(start, '\n'))
	time.Sleep(700 * time.Millisecond)
	stdinW.Close()
	if code := <-done; code != 0 || errOut.Len() > 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var c Clock
	line, err := out.ReadBytes('\n')
	if err != nil || json.Unmarshal(line, &c) != nil || c.At.Before(began) || time.Since(c.At) > time.Second {
		t.Fatalf("first line %q: want the generator's clock as it read its Start", line)
	}
	r, err := loadgen.Merge(context.Background(), []loadgen.Source{{Name: "pod", R: &out}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Verdict != loadgen.Lossless || r.Total < 30 || r.Total > 60 || r.RateTarget != 100 {
		t.Errorf("merged: %s, %d requests at %d/s (%v); want lossless, about 50 at 100/s", r.Verdict, r.Total, r.RateTarget, r.NotJudged)
	}
	if at := r.Started.Sub(began); at < 150*time.Millisecond {
		t.Errorf("started %s after it was told to wait 200ms", at)
	}
	errOut.Reset()
	if code := run(context.Background(), strings.NewReader("{\n"), &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "the load") {
		t.Errorf("a load that is not JSON: exit %d, %q", code, errOut.String())
	}
}

// A clock 5 s ahead, read back after a 40 ms round trip, is 5 s ahead
// give or take 20 ms.
func TestOffsetIsFromTheMiddleOfTheRoundTrip(t *testing.T) {
	sent := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	received := sent.Add(40 * time.Millisecond)
	c := Clock{At: sent.Add(20*time.Millisecond + 5*time.Second)}
	if off, unc := Offset(c, sent, received); off != 5*time.Second || unc != 20*time.Millisecond {
		t.Errorf("Offset = %s ± %s; want 5s ± 20ms", off, unc)
	}
}

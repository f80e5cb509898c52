package scenario_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

// One rule decides every record's verdict, whichever output shows it.
func TestRecordsVerdictRule(t *testing.T) {
	lossy := &loadgen.Report{Total: 100, Lost: 3, LostByClass: map[loadgen.Class]int{loadgen.Reset: 3}}
	load := func(rep *loadgen.Report, o scenario.Outcome) *scenario.Result {
		return &scenario.Result{Scenario: "shop", Disruption: "rollout restart", Namespace: "ns-1",
			Traffic: []scenario.TrafficResult{{Name: "keepalive", URL: "http://10.0.0.1:30080/", Report: rep, Outcome: o,
				Expect: scenario.Expectation{Verdict: loadgen.Lossless}}}}
	}
	for _, c := range []struct {
		name       string
		res        *scenario.Result
		err        error
		verdict    loadgen.Verdict
		asExpected bool
		row        string
	}{
		{"lossless", load(&loadgen.Report{Total: 100}, scenario.Outcome{Expected: loadgen.Lossless, Got: loadgen.Lossless}), nil, loadgen.Lossless, true, "shop, rollout restart, keepalive: 100 requests, 0 lost; expected lossless, got lossless ✓"},
		{"lossy against a lossless claim", load(lossy, scenario.Outcome{Expected: loadgen.Lossless, Got: loadgen.Lossy, Problems: []string{"lost 3"}}), nil, loadgen.Lossy, false, "expected lossless, got lossy ✗ lost 3"},
		{"an error after the verdict", load(lossy, scenario.Outcome{Expected: loadgen.Lossless, Got: loadgen.Lossy}), errors.New("check: v2 never answered\nmore"), loadgen.NotJudged, false, "got not judged ✗ check: v2 never answered"},
		{"no report", load(nil, scenario.Outcome{}), nil, loadgen.NotJudged, false, "got not judged"},
		{"no run", nil, fmt.Errorf("deploying: %w", scenario.ErrNotJudged), loadgen.NotJudged, false, "got not judged ✗ deploying: not judged"},
	} {
		recs := scenario.Records(c.res, c.err)
		if len(recs) != 1 {
			t.Fatalf("%s: %d records", c.name, len(recs))
		}
		r := recs[0]
		if r.Verdict != c.verdict || r.AsExpected != c.asExpected {
			t.Errorf("%s: verdict %q, as expected %v", c.name, r.Verdict, r.AsExpected)
		}
		if r.Expected != loadgen.Lossless && c.res != nil {
			t.Errorf("%s: expected %q, want the claim's", c.name, r.Expected)
		}
		if row := r.Row().String(); !strings.Contains(row, c.row) {
			t.Errorf("%s: row %q, want %q in it", c.name, row, c.row)
		}
	}
}

// The text a person reads says the verdict first, the claim a run did not
// show, what to change, and bad input as such.
func TestRecordText(t *testing.T) {
	rep := &loadgen.Report{Total: 100, Lost: 3, LostByClass: map[loadgen.Class]int{loadgen.Refused: 3}}
	res := &scenario.Result{Scenario: "shop", Disruption: "rollout restart",
		Traffic: []scenario.TrafficResult{{Name: "fresh", Report: rep,
			Outcome: scenario.Outcome{Expected: loadgen.Lossless, Got: loadgen.Lossy, Problems: []string{"lost 3"}},
			Expect:  scenario.Expectation{Verdict: loadgen.Lossless, Why: "a rollout of a well-configured Deployment loses no request"}}}}
	var b strings.Builder
	scenario.Records(res, nil)[0].WriteText(&b)
	text := b.String()
	for _, want := range []string{"LOSSY: 3 of 100 requests lost through the rollout restart (refused 3)\n",
		"claimed: a rollout of a well-configured Deployment loses no request", "What happened, and what to change:", "Timeline"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	b.Reset()
	scenario.Records(&scenario.Result{}, fmt.Errorf("no Service selects the pods: %w", scenario.ErrBadInput))[0].WriteText(&b)
	if !strings.HasPrefix(b.String(), "BAD INPUT, nothing judged: no Service selects the pods") {
		t.Errorf("bad input printed as %q", b.String())
	}
}

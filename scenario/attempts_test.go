package scenario_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Only a run that reached no verdict may be run again: a lossy run, a
// run that broke its claim, and bad input are answers, not retries.
func TestNotJudgedWhy(t *testing.T) {
	judged := func(got loadgen.Verdict, notJudged ...string) *scenario.Result {
		return &scenario.Result{Traffic: []scenario.TrafficResult{{Name: "fresh", Report: &loadgen.Report{},
			Outcome: scenario.Outcome{Got: got, NotJudged: notJudged, Problems: notJudged}}}}
	}
	notJudgedErr := fmt.Errorf("calibrating: %w", scenario.ErrNotJudged)
	for _, c := range []struct {
		name string
		res  *scenario.Result
		err  error
		want string
	}{
		{"lossless", judged(loadgen.Lossless), nil, ""},
		{"lossy", judged(loadgen.Lossy), nil, ""},
		{"a broken claim", &scenario.Result{Traffic: []scenario.TrafficResult{{Report: &loadgen.Report{}, Outcome: scenario.Outcome{Got: loadgen.Lossless, Problems: []string{"v2 answers: no"}}}}}, nil, ""},
		{"load not delivered", judged(loadgen.NotJudged, "the load generator stood still 52ms"), nil, "fresh: the load generator stood still 52ms"},
		{"calibration", &scenario.Result{}, notJudgedErr, "calibrating: not judged"},
		{"bad input", &scenario.Result{}, fmt.Errorf("x: %w", scenario.ErrBadInput), ""},
		{"another error", &scenario.Result{}, errors.New("deploying: boom"), ""},
	} {
		if got := scenario.NotJudgedWhy(c.res, c.err); got != c.want {
			t.Errorf("%s: NotJudgedWhy = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestSummaryNamesRunsRunAgain(t *testing.T) {
	rows := []scenario.Row{
		{Config: "exec-readiness", Disruption: "rollout restart", Load: "fresh", Total: 20000, Expected: loadgen.Lossless, Got: loadgen.Lossless, Passed: true,
			EarlierAttempts: []string{"fresh: the load generator stood still 1 times for 50ms or more"}},
		{Config: "baseline-good", Disruption: "rollout restart", Load: "keepalive", Total: 20000, Expected: loadgen.Lossless, Got: loadgen.Lossless, Passed: true},
	}
	var sb strings.Builder
	if err := scenario.WriteSummary(&sb, rows); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	if !strings.Contains(out, "Run again because an earlier run was not judged") ||
		!strings.Contains(out, "- exec-readiness, rollout restart, fresh: fresh: the load generator stood still") {
		t.Errorf("the summary hides the run that was run again:\n%s", out)
	}
	if strings.Contains(out, "- baseline-good") {
		t.Errorf("a run judged the first time is listed as run again:\n%s", out)
	}
}

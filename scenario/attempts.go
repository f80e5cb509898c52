package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/internal/procs"
	"github.com/nodrop-dev/nodrop/internal/witness"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// DefaultAttempts is how many times nodrop runs a scenario that ends not
// judged before it says so: once more. On 2 cores a run's load generator
// is now and then held back 50 ms or more by the cluster on the same
// machine (measured: once in about 60 runs); that run measured nothing,
// and a second one usually does.
const DefaultAttempts = 2

// NotJudgedWhy says why a finished run reached no verdict, or "" when it
// did: its error wraps ErrNotJudged (calibration failed, the load slot
// never came), or a load of it was not delivered.
func NotJudgedWhy(res *Result, err error) string {
	if errors.Is(err, ErrNotJudged) {
		return err.Error()
	}
	if err != nil || res == nil {
		return ""
	}
	var why []string
	for _, t := range res.Traffic {
		if t.Report != nil && t.Outcome.Got == loadgen.NotJudged {
			why = append(why, t.Name+": "+strings.Join(t.Outcome.NotJudged, "; "))
		}
	}
	return strings.Join(why, "; ")
}

// RunUntilJudged runs s, and runs it again while a run ends not judged,
// attempts times at most. A run that was not judged measured nothing, so
// running it again hides no loss: a judged run, lossless or lossy, as
// claimed or not, is never repeated, nor is a run after bad input or an
// interrupt. The result is the last run's; EarlierAttempts says why the
// ones before it were not judged.
func (s Scenario) RunUntilJudged(ctx context.Context, env Env, attempts int) (*Result, error) {
	var earlier []string
	for i := 1; ; i++ {
		res, err := s.Run(ctx, env)
		why := NotJudgedWhy(res, err)
		if why == "" || i >= attempts || ctx.Err() != nil {
			if res != nil {
				res.EarlierAttempts = append(earlier, res.EarlierAttempts...)
			}
			return res, err
		}
		if res != nil {
			earlier = append(earlier, res.EarlierAttempts...) // rates lowered within it
		}
		earlier = append(earlier, why)
		if q, ok := env.Witness.(quieter); ok {
			step := env.Log.Start("not judged (%s): waiting until the machine is quiet (the witness on time and CPU pressure ≤ %.0f%% for %s, at most %s)",
				why, 100*witness.DefaultQuiet.MaxPressure, witness.DefaultQuiet.For, witness.DefaultQuiet.Max)
			w, err := q.WaitQuiet(ctx, witness.DefaultQuiet)
			if err != nil {
				_ = step.Fail(err)
				if res != nil {
					res.EarlierAttempts = earlier
				}
				return res, notJudged{fmt.Errorf("interrupted waiting for quiet: %w", err)}
			}
			if w.Quiet {
				step.Done(fmt.Sprintf("quiet after %s (CPU pressure %s)", w.Took.Round(time.Second), pct(w.Last)))
			} else {
				step.Done(fmt.Sprintf("still busy after %s (CPU pressure %s%s): trying anyway", w.Took.Round(time.Second), pct(w.Last), busiest("; the busiest: ", w.Busiest)))
			}
		}
		env.Log.Printf("• running it again, attempt %d of %d", i+1, attempts)
	}
}

// quieter is a witness that can wait until the machine is quiet
// (internal/witness).
type quieter interface {
	WaitQuiet(ctx context.Context, q witness.Quiet) (witness.Waited, error)
}

// busiest says, after prefix, which processes used the CPU most; ""
// when none is known.
func busiest(prefix string, uses []procs.Use) string {
	if len(uses) == 0 {
		return ""
	}
	return prefix + procs.List(uses) + " of a CPU"
}

func pct(share float64) string {
	if share < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.0f%%", 100*share)
}

package scenario

import (
	"context"
	"errors"
	"strings"

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
				res.EarlierAttempts = earlier
			}
			return res, err
		}
		earlier = append(earlier, why)
		env.Log.Printf("• not judged (%s): running it again, attempt %d of %d", why, i+1, attempts)
	}
}

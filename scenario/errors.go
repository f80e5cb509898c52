package scenario

import (
	"errors"
	"fmt"
)

// The two ways a run ends without a verdict: the user must change
// something (ErrBadInput), or the run could not be decided (ErrNotJudged).

// ErrBadInput marks a scenario that cannot run as given: no Deployment
// to roll, no Service in front of it, a port that does not exist, pods
// that cannot start. Nothing was judged, and the user must change
// something.
var ErrBadInput = errors.New("bad input")

type badInput struct{ error }

func (badInput) Is(target error) bool { return target == ErrBadInput }
func (e badInput) Unwrap() error      { return e.error }

func badInputf(format string, args ...any) error { return badInput{fmt.Errorf(format, args...)} }

// ErrNotJudged marks a run whose verdict could not be decided: the load
// was not delivered, calibration lost requests before any disruption
// (the set-up is broken), or the run was interrupted. It is never a pass.
var ErrNotJudged = errors.New("not judged")

type notJudged struct{ error }

func (notJudged) Is(target error) bool { return target == ErrNotJudged }
func (e notJudged) Unwrap() error      { return e.error }

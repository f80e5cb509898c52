// Package matchers holds Gomega matchers on loadgen reports. Their failure
// messages print the whole report, so a failed spec explains itself.
package matchers

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// BeLossless succeeds when requests completed and none was lost.
func BeLossless() types.GomegaMatcher { return &losslessMatcher{} }

type losslessMatcher struct{}

func (m *losslessMatcher) Match(actual any) (bool, error) {
	r, err := report(actual)
	if err != nil {
		return false, err
	}
	return r.Lossless(), nil
}

func (m *losslessMatcher) FailureMessage(actual any) string {
	r, _ := report(actual)
	if r != nil && r.Total == 0 {
		return "Expected a lossless run, but no request was sent, so nothing was judged"
	}
	return "Expected no lost requests, got " + describe(actual)
}

func (m *losslessMatcher) NegatedFailureMessage(actual any) string {
	return "Expected lost requests, got none: " + describe(actual)
}

func report(actual any) (*loadgen.Report, error) {
	r, ok := actual.(*loadgen.Report)
	if !ok || r == nil {
		return nil, fmt.Errorf("expected a *loadgen.Report, got %T", actual)
	}
	return r, nil
}

func describe(actual any) string {
	r, err := report(actual)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString(r.Summary())
	b.WriteString("\n")
	if err := r.WriteTable(&b); err != nil {
		fmt.Fprintf(&b, "(report table: %v)", err)
	}
	return b.String()
}

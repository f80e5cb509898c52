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

// LoseRequests succeeds when at least one request was lost; with classes,
// only losses of those classes count. It is the matcher of negative
// controls: a known-lossy configuration that loses nothing means the
// harness missed something.
func LoseRequests(classes ...loadgen.Class) types.GomegaMatcher {
	return &lossMatcher{classes: classes}
}

type lossMatcher struct{ classes []loadgen.Class }

func (m *lossMatcher) lost(r *loadgen.Report) int {
	if len(m.classes) == 0 {
		return r.Lost
	}
	n := 0
	for _, c := range m.classes {
		n += r.LostByClass[c]
	}
	return n
}

func (m *lossMatcher) Match(actual any) (bool, error) {
	r, err := report(actual)
	if err != nil {
		return false, err
	}
	return r.Total > 0 && m.lost(r) > 0, nil
}

func (m *lossMatcher) what() string {
	if len(m.classes) == 0 {
		return "lost requests"
	}
	names := make([]string, len(m.classes))
	for i, c := range m.classes {
		names[i] = string(c)
	}
	return "requests lost as " + strings.Join(names, " or ")
}

func (m *lossMatcher) FailureMessage(actual any) string {
	return fmt.Sprintf("Expected %s (negative control: the harness must catch them), got %s", m.what(), describe(actual))
}

func (m *lossMatcher) NegatedFailureMessage(actual any) string {
	return fmt.Sprintf("Expected no %s, got %s", m.what(), describe(actual))
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

package main

import (
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"
)

// Each failed spec gets a line with its failure's lines joined (an error
// Gomega prints under "Unexpected error:" included); the reasons are
// counted by first line, numbers aside; passed specs are not named.
func TestDigest(t *testing.T) {
	failed := func(text, msg string) types.SpecReport {
		return types.SpecReport{ContainerHierarchyTexts: []string{"Rolling update"}, LeafNodeText: text, LeafNodeType: types.NodeTypeIt,
			State: types.SpecStateFailed, Failure: types.Failure{Message: msg, FailureNodeType: types.NodeTypeIt}}
	}
	r := types.Report{SpecReports: types.SpecReports{
		failed("a", "Expected success, got: creating namespace: dial tcp 172.19.0.2:6443: connect: connection refused\nmore"),
		failed("b", "Expected success, got: creating namespace: dial tcp 172.19.0.2:6443: connect: connection refused"),
		failed("c", "not judged: the generator stood still 80 ms"),
		failed("e", "Unexpected error:\n    <*errors.errorString | 0xc000>:\n    interrupted waiting for quiet: context deadline exceeded\n    {}\noccurred"),
		{LeafNodeText: "d", LeafNodeType: types.NodeTypeIt, State: types.SpecStatePassed},
	}}
	var b strings.Builder
	if n := digest(&b, []types.Report{r}); n != 4 {
		t.Errorf("%d failed, want 4", n)
	}
	out := b.String()
	for _, want := range []string{
		"FAILED Rolling update a (failed",
		"connection refused | more\n",
		"FAILED Rolling update e (failed, :0): Unexpected error: | <*errors.errorString | 0xc000>: | interrupted waiting for quiet: context deadline exceeded | {} | occurred\n",
		"    1  Unexpected error:\n",
		"    2  Expected success, got: creating namespace: dial tcp N.N.N.N:N: connect: connection refused\n",
		"    1  not judged: the generator stood still N ms\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, " d ") {
		t.Errorf("a passed spec printed:\n%s", out)
	}
}

// A message clipped inside a multi-byte character keeps it whole or
// drops it, never half of it.
func TestClipKeepsCharactersWhole(t *testing.T) {
	if got := clip("ab≤cd", 3); got != "ab…" {
		t.Errorf("clip = %q, want %q", got, "ab…")
	}
}

package main

import (
	"strings"
	"testing"

	"github.com/onsi/ginkgo/v2/types"
)

// Each failed spec gets a line with the first line of its failure; the
// reasons are counted with their numbers aside; passed specs are not named.
func TestDigest(t *testing.T) {
	failed := func(text, msg string) types.SpecReport {
		return types.SpecReport{ContainerHierarchyTexts: []string{"Rolling update"}, LeafNodeText: text, LeafNodeType: types.NodeTypeIt,
			State: types.SpecStateFailed, Failure: types.Failure{Message: msg, FailureNodeType: types.NodeTypeIt}}
	}
	r := types.Report{SpecReports: types.SpecReports{
		failed("a", "Expected success, got: creating namespace: dial tcp 172.19.0.2:6443: connect: connection refused\nmore"),
		failed("b", "Expected success, got: creating namespace: dial tcp 172.19.0.2:6443: connect: connection refused"),
		failed("c", "not judged: the generator stood still 80 ms"),
		{LeafNodeText: "d", LeafNodeType: types.NodeTypeIt, State: types.SpecStatePassed},
	}}
	var b strings.Builder
	if n := digest(&b, []types.Report{r}); n != 3 {
		t.Errorf("%d failed, want 3", n)
	}
	out := b.String()
	for _, want := range []string{
		"FAILED Rolling update a (failed",
		"connection refused\n",
		"    2  Expected success, got: creating namespace: dial tcp N.N.N.N:N: connect: connection refused\n",
		"    1  not judged: the generator stood still N ms\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, " d ") || strings.Contains(out, "more") {
		t.Errorf("a passed spec or a failure's later lines printed:\n%s", out)
	}
}

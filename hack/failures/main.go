// Command failures prints, after a suite run, why each spec failed: one
// line per failed spec with its failure's message on that line (its lines
// joined, up to MaxWhy bytes), then how many failed for each reason. The
// Makefile runs it when the suites fail, so the end of a CI log says why,
// not only which.
//
//	go run ./hack/failures out/report.json
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/onsi/ginkgo/v2/types"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: failures REPORT.json (Ginkgo's --json-report)")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "failures:", err)
		os.Exit(2)
	}
	var reports []types.Report
	if err := json.Unmarshal(data, &reports); err != nil {
		fmt.Fprintln(os.Stderr, "failures:", err)
		os.Exit(2)
	}
	if digest(os.Stdout, reports) == 0 {
		fmt.Println("no spec failed in", os.Args[1])
	}
}

// digest writes a line per failed spec and the count per reason (numbers
// aside), and returns how many failed.
func digest(w io.Writer, reports []types.Report) int {
	digits := regexp.MustCompile(`[0-9]+`)
	reasons := map[string]int{}
	n := 0
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if !s.State.Is(types.SpecStateFailureStates) {
				continue
			}
			n++
			why, reason := oneLine(s.Failure.Message), firstLine(s.Failure.Message)
			if s.Failure.FailureNodeType != types.NodeTypeIt && s.Failure.FailureNodeType != types.NodeTypeInvalid {
				why = fmt.Sprintf("in %s: %s", s.Failure.FailureNodeType, why)
				reason = fmt.Sprintf("in %s: %s", s.Failure.FailureNodeType, reason)
			}
			name := strings.TrimSpace(strings.Join(append(s.ContainerHierarchyTexts, s.LeafNodeText), " "))
			if name == "" {
				name = s.LeafNodeType.String()
			}
			fmt.Fprintf(w, "FAILED %s (%s, %s): %s\n", name, s.State, s.Failure.Location, why)
			reasons[digits.ReplaceAllString(clip(reason, 120), "N")]++
		}
	}
	if n == 0 {
		return 0
	}
	keys := make([]string, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return reasons[keys[i]] > reasons[keys[j]] || reasons[keys[i]] == reasons[keys[j]] && keys[i] < keys[j]
	})
	fmt.Fprintf(w, "\n%d failed specs, by reason:\n", n)
	for _, k := range keys {
		fmt.Fprintf(w, "%5d  %s\n", reasons[k], k)
	}
	return n
}

// MaxWhy bounds a failure's line: enough for a verdict's evidence or an
// error under "Unexpected error:", which Gomega puts on the lines after it.
const MaxWhy = 1500

// oneLine is a failure's message on one line: its non-empty lines,
// trimmed, joined with " | ", clipped at MaxWhy.
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return clip(strings.Join(parts, " | "), MaxWhy)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		for !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n] + "…"
	}
	return s
}

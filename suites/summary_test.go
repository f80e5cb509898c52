package suites_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/filename"
	"github.com/nodrop-dev/nodrop/scenario"
)

// The summary table lists every spec that ran: its verdict rows, marked
// by the spec's own state (a spec that failed any check fails its rows),
// and a row for each spec that failed before its verdict (set-up,
// calibration).
var _ = ReportAfterSuite("verdict summary", func(report Report) {
	var rows []scenario.Row
	for _, spec := range report.SpecReports {
		if spec.LeafNodeType != types.NodeTypeIt || spec.State.Is(types.SpecStateSkipped|types.SpecStatePending) {
			continue
		}
		passed := spec.State.Is(types.SpecStatePassed)
		failure := firstLine(spec.Failure.Message)
		var own []scenario.Row
		for _, e := range spec.ReportEntries {
			if e.Name != "verdict" {
				continue
			}
			row, ok := e.GetRawValue().(scenario.Row)
			if !ok { // reported by another parallel process: only JSON is left
				if err := json.Unmarshal([]byte(e.Value.AsJSON), &row); err != nil {
					row = scenario.Row{Config: spec.FullText(), Problem: "unreadable verdict: " + err.Error()}
				}
			}
			own = append(own, row)
		}
		if len(own) == 0 {
			if !passed {
				rows = append(rows, scenario.Row{Config: spec.LeafNodeText, Disruption: "—", Load: "—", Problem: "no verdict: " + failure})
			}
			continue
		}
		for _, row := range own {
			row.Passed = passed && row.Passed
			if !passed && row.Problem == "" {
				row.Problem = failure
			}
			rows = append(rows, row)
		}
	}
	if err := writeSummary(rows); err != nil {
		fmt.Fprintln(os.Stderr, "writing the summary:", err)
	}
})

// firstLine is a failure in one line that says something: Gomega's
// "Unexpected error:" and the error's type line are skipped, and a bare
// "Expected <value> to <match>" (an assertion without a description) is
// joined into one line, since the line "Expected" alone says nothing.
func firstLine(s string) string {
	lines := strings.Split(s, "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if line == "" || line == "Unexpected error:" || strings.HasPrefix(line, "<*") || strings.HasPrefix(line, "<") && strings.HasSuffix(line, ">: {") {
			continue
		}
		if line == "Expected" {
			line = strings.Join(strings.Fields(strings.Join(lines[i:], " ")), " ")
		}
		if len(line) > 300 {
			line = line[:300] + "…"
		}
		return line
	}
	return strings.TrimSpace(s)
}

// writeSummary writes the Markdown table of verdicts to
// $NODROP_REPORT_DIR (default: out/ in the source tree) and to stdout.
func writeSummary(rows []scenario.Row) error {
	dir, err := reportDir()
	if err != nil {
		return err
	}
	var sb strings.Builder
	if err := scenario.WriteSummary(&sb, rows); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Println("\n" + sb.String())
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(sb.String()), 0o644)
}

// reportDir is where reports go: $NODROP_REPORT_DIR, or out/ in the
// source tree.
func reportDir() (string, error) {
	if dir := os.Getenv("NODROP_REPORT_DIR"); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := images.SourceRoot(wd)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "out"), nil
}

// writeResult keeps a run's whole result (every bucket, loss and event)
// as results/<spec>.json in the report directory, for a person reading a
// failure after CI and for tools comparing runs.
func writeResult(res *scenario.Result) error {
	dir, err := reportDir()
	if err != nil {
		return err
	}
	dir = filepath.Join(dir, "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := filename.Safe(CurrentSpecReport().FullText())
	if len(name) > 150 {
		name = name[:150]
	}
	b, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644)
}

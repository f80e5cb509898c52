package suites_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// writeSummary writes the Markdown table of verdicts to
// $NODROP_REPORT_DIR (default: out/ in the source tree) and to stdout.
func writeSummary(rows []verdictRow) error {
	dir := os.Getenv("NODROP_REPORT_DIR")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		root, err := images.SourceRoot(wd)
		if err != nil {
			return err
		}
		dir = filepath.Join(root, "out")
	}
	var sb strings.Builder
	sb.WriteString("| variant | disruption | load | requests | lost | lost by class | longest outage | rollout or upgrade | expected | got |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		var classes []string
		for _, c := range loadgen.LossClasses {
			if n := r.ByClass[c]; n > 0 {
				classes = append(classes, fmt.Sprintf("%s %d", c, n))
			}
		}
		mark := "✓"
		if r.Got != r.Expected {
			mark = "✗"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %d | %d | %s | %.2fs | %.1fs | %s | %s %s |\n",
			r.Variant, r.Disruption, r.Mode, r.Total, r.Lost, strings.Join(classes, ", "), r.Outage, r.RolloutSec, r.Expected, r.Got, mark)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fmt.Println("\n" + sb.String())
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(sb.String()), 0o644)
}

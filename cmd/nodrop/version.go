package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/internal/nodeimage"
)

// version says which nodrop this is: the module version it was built as
// (a tag, or "(devel)" from a checkout), the commit and its time, and
// whether the tree had changes, as the Go toolchain stamped them; and the
// node image it builds.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "nodrop (no build information) " + runtime.Version()
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", with uncommitted changes"
			}
		}
	}
	out := "nodrop " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += fmt.Sprintf(" (commit %s, %s%s)", rev, at, modified)
	}
	out += " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	return out + fmt.Sprintf("; node image %s (Kubernetes %s)", nodeimage.Tag(nodeimage.Options{}), nodeimage.DefaultKubernetesVersion)
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print which nodrop this is (also --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version())
			return nil
		},
	}
}

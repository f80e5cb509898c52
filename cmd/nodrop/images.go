package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

func newImagesCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{Use: "images", Short: "Load local images into nodrop's kind nodes, list what they hold, or build the load generator's image"}
	cmd.PersistentFlags().StringVar(&name, "cluster", cluster.DefaultName, "name of nodrop's kind cluster")
	load := &cobra.Command{
		Use:   "load REF...",
		Short: "Load images from the local Docker engine into every node (no registry needed)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("images load takes one or more image references")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kindCluster(cmd, name); err != nil {
				return err
			}
			return loadLocalImages(cmd.Context(), name, args, progress.New(cmd.ErrOrStderr(), false))
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the images the nodes hold (nodrop's own with their content-hash tags)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kindCluster(cmd, name); err != nil {
				return err
			}
			byNode, err := cluster.NodeImages(name)
			if err != nil {
				return err
			}
			nodes := make([]string, 0, len(byNode))
			for n := range byNode {
				nodes = append(nodes, n)
			}
			sort.Strings(nodes)
			out := cmd.OutOrStdout()
			for _, n := range nodes {
				fmt.Fprintf(out, "%s:\n", n)
				for _, ref := range byNode[n] {
					fmt.Fprintf(out, "  %s\n", strings.TrimPrefix(ref, "docker.io/"))
				}
			}
			return nil
		},
	}
	gen := &cobra.Command{
		Use:   "generator",
		Short: "Build the load generator's image from this nodrop (for check --load-from cluster) and print its reference",
		Long: `Build the load generator's image from this nodrop binary, offline, in the
local Docker engine, and print its reference. On nodrop's kind cluster
check --load-from cluster builds and loads it by itself; for a cluster of
your own, tag and push it where the nodes pull from, and give it to check
as --generator-image.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireDocker(cmd.Context()); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			dir, err := cacheDir()
			if err != nil {
				return err
			}
			ref, err := images.Generator(cmd.Context(), self, dir, progress.New(cmd.ErrOrStderr(), false))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	cmd.AddCommand(load, list, gen)
	return cmd
}

// kindCluster checks that Docker answers and nodrop's cluster exists.
func kindCluster(cmd *cobra.Command, name string) error {
	if err := requireDocker(cmd.Context()); err != nil {
		return err
	}
	ok, err := cluster.Exists(name)
	if err != nil {
		return err
	}
	if !ok {
		return usagef("nodrop's kind cluster %q does not exist: bring it up with `nodrop cluster up`", name)
	}
	return nil
}

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// cacheDir is where nodrop keeps what it builds (package cachedir).
func cacheDir() (string, error) {
	d, err := cachedir.Dir()
	if err != nil {
		return "", usageError{err}
	}
	return d, nil
}

func newNodeImageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "node-image", Short: "Build kind node images offline"}
	var (
		opts     nodeimage.Options
		verbose  bool
		printTag bool
	)
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the kind node image from Go modules and Debian packages (no registry)",
		Long: `Build the kind node image offline: Kubernetes, etcd and CoreDNS compiled from
the Go module proxy, a Debian root file system from Debian's packages, and
control-plane images assembled without a registry. Every intermediate artifact
is cached under the cache directory; an unchanged rebuild takes seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if printTag {
				fmt.Fprintln(cmd.OutOrStdout(), nodeimage.Tag(opts))
				return nil
			}
			dir, err := cacheDir()
			if err != nil {
				return err
			}
			opts.CacheDir = dir
			opts.Log = progress.New(cmd.ErrOrStderr(), verbose)
			if err := requireDocker(cmd.Context()); err != nil {
				return err
			}
			tag, err := nodeimage.Build(cmd.Context(), opts)
			if errors.Is(err, nodeimage.ErrNotRoot) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tag)
			return nil
		},
	}
	f := build.Flags()
	f.StringVar(&opts.KubernetesVersion, "kubernetes-version", nodeimage.DefaultKubernetesVersion, "Kubernetes release to build")
	f.StringVar(&opts.Mirror, "mirror", "", "Debian mirror for debootstrap (default: the one this host's apt uses)")
	f.BoolVarP(&verbose, "verbose", "v", false, "show the output of every command")
	f.BoolVar(&printTag, "print-tag", false, "print the tag this build would produce and exit")
	cmd.AddCommand(build)
	return cmd
}

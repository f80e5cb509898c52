package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/fixtures"
)

func newVariantsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "variants",
		Short: "List the configuration catalogue with each variant's expected verdict and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIANT\tKEEP-ALIVE\tFRESH\tTWIN\tWHY")
			for _, v := range fixtures.Catalogue {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Expects(fixtures.KeepAlive), v.Expects(fixtures.Fresh), v.Twin, v.Why)
			}
			return tw.Flush()
		},
	}
}

func newRenderCommand() *cobra.Command {
	var ns, image string
	cmd := &cobra.Command{
		Use:   "render VARIANT",
		Short: "Print a variant's Kubernetes objects as YAML",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("render takes one variant name; `nodrop variants` lists them")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := fixtures.Lookup(args[0])
			if err != nil {
				return usageError{err}
			}
			if image == "" {
				image = "nodrop/app:" + v.ImageVariant
			}
			objs, err := v.Render(ns, image)
			if err != nil {
				return err
			}
			y, err := objs.YAML()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# %s\n", v.Describe())
			fmt.Fprintf(out, "# image: `nodrop cluster up` builds and loads it as nodrop/app:%s-<content hash>\n", v.ImageVariant)
			_, err = out.Write(y)
			return err
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "default", "namespace of the objects")
	cmd.Flags().StringVar(&image, "image", "", "image reference (default: nodrop/app:<image variant>)")
	return cmd
}

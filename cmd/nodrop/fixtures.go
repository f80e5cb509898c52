package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/loadgen"
)

func newVariantsCommand() *cobra.Command {
	var detail bool
	cmd := &cobra.Command{
		Use:   "variants",
		Short: "List the configuration catalogue with each variant's expected verdict and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIANT\tKEEP-ALIVE\tFRESH\tTWIN\tWHY")
			for _, v := range fixtures.Catalogue {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Expects(fixtures.KeepAlive), v.Expects(fixtures.Fresh), v.Twin, v.Why)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if !detail {
				return nil
			}
			for _, v := range fixtures.Catalogue {
				if len(v.Expect.Classes) == 0 {
					continue
				}
				fmt.Fprintf(out, "\n%s loses requests as:\n", v.Name)
				for _, c := range loadgen.LossClasses {
					if why, ok := v.Expect.Classes[c]; ok {
						fmt.Fprintf(out, "  %-8s %s\n", c, why)
					}
				}
				for _, m := range fixtures.Modes {
					for _, t := range v.Expect.Starts[m] {
						fmt.Fprintf(out, "  starting (%s) %s\n", m, t)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&detail, "detail", false, "also list, for each lossy variant, the loss classes of its mechanism with why each appears, and when its losses start")
	return cmd
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

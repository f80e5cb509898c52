package main

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/loadgen"
)

func newVariantsCommand() *cobra.Command {
	var detail bool
	cmd := &cobra.Command{
		Use:   "variants",
		Short: "List the configuration catalogue and the hot-upgrade cases, with each one's expected verdict and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "VARIANT\tKEEP-ALIVE\tFRESH\tGRPC\tTWIN\tWHY")
			for _, v := range fixtures.Catalogue {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, expected(v, fixtures.KeepAlive), expected(v, fixtures.Fresh), grpcExpected(v), v.Twin, v.Why)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out, "\nHot upgrades (in place, under load):")
			tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tLOAD\tEXPECTED\tWHY")
			for _, c := range fixtures.NginxCases {
				fmt.Fprintf(tw, "nginx %s\t%s\t%s\t%s\n", c.Name, c.Load.Load, c.Load.Expect.Verdict, c.Load.Expect.Why)
			}
			for _, c := range fixtures.SidecarCases {
				for _, l := range c.Loads() {
					fmt.Fprintf(tw, "sidecarset %s\t%s\t%s\t%s\n", c.Name, l.Load, l.Expect.Verdict, l.Expect.Why)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out, "\nBehind a proxy (make proxy; check --via):")
			tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tLOAD\tEXPECTED\tWHY")
			for _, c := range fixtures.ProxyCases() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name(), c.Mode, proxyVerdict(c.Expect, c.Mode), c.Why)
			}
			for _, c := range fixtures.GrayCases() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name(), c.Mode, proxyVerdict(c.Expect, c.Mode), c.Why)
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
				for _, m := range v.Modes() {
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
	var ns, image, clusterName string
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
			var notes, more []string
			if image == "" {
				var note string
				image, note = loadedImage(cmd.Context(), v.ImageVariant, clusterName)
				notes = append(notes, note)
			}
			for _, variant := range v.Images()[1:] {
				ref, note := loadedImage(cmd.Context(), variant, clusterName)
				more, notes = append(more, ref), append(notes, note)
			}
			objs, err := v.Render(ns, image, more...)
			if err != nil {
				return err
			}
			y, err := objs.YAML()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# %s\n", v.Describe())
			for _, note := range slices.Compact(notes) {
				if note != "" {
					fmt.Fprintf(out, "# %s\n", note)
				}
			}
			_, err = out.Write(y)
			return err
		},
	}
	cmd.Flags().StringVar(&ns, "namespace", "default", "namespace of the objects")
	cmd.Flags().StringVar(&image, "image", "", "image reference (default: the variant's image as loaded in nodrop's kind nodes)")
	cmd.Flags().StringVar(&clusterName, "cluster", cluster.DefaultName, "nodrop's kind cluster, whose nodes hold the images")
	return cmd
}

// loadedImage is the reference of an image variant as nodrop's kind nodes
// hold it (its tag ends in a content hash), so that rendered objects work
// as printed; without a cluster, as the local Docker engine holds it. The
// note says where it came from, or what to do when neither has it.
func loadedImage(ctx context.Context, variant, clusterName string) (ref, note string) {
	img, ok := images.Find(variant)
	if !ok {
		return "nodrop/app:" + variant, ""
	}
	prefix := img.Repo + ":" + variant + "-"
	match := func(r string) bool {
		r = strings.TrimPrefix(r, "docker.io/")
		tag, ok := strings.CutPrefix(r, prefix)
		return ok && len(tag) == 12 && strings.Trim(tag, "0123456789abcdef") == ""
	}
	if requireDocker(ctx) != nil {
		return prefix + "<content hash>", "image: `nodrop cluster up` builds it and loads it into the nodes; no Docker engine answers here to say its tag"
	}
	if ok, _ := cluster.Exists(clusterName); ok {
		if byNode, err := cluster.NodeImages(clusterName); err == nil {
			for _, refs := range byNode {
				for _, r := range refs {
					if match(r) {
						return strings.TrimPrefix(r, "docker.io/"), "image: as loaded in the nodes of kind cluster " + clusterName
					}
				}
			}
		}
	}
	out, err := exec.CommandContext(ctx, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}", img.Repo).Output()
	if err == nil {
		for _, r := range strings.Fields(string(out)) {
			if match(r) {
				return r, "image: in the local Docker engine; load it into the nodes first (nodrop images load " + r + ")"
			}
		}
	}
	return prefix + "<content hash>", "image: not built yet; `nodrop cluster up` builds it and loads it into the nodes"
}

// proxyVerdict is a proxy case's expected verdict in mode m, a race a run
// may win said as such.
func proxyVerdict(e fixtures.Expectation, m fixtures.Mode) string {
	if e.MayLoseNothing[m] {
		return "lossy (a race)"
	}
	return string(e.Verdict[m])
}

// expected is a variant's verdict in a load mode, or "-" when it is not
// rolled under it.
// grpcExpected is v's claim under gRPC load: pinned clients, or clients
// that balance themselves.
func grpcExpected(v fixtures.Variant) string {
	if e := v.Expects(fixtures.ClientSideGRPC); e != "" {
		return string(e) + " (client-side)"
	}
	return expected(v, fixtures.LongLivedGRPC)
}

func expected(v fixtures.Variant, m fixtures.Mode) string {
	if e := v.Expects(m); e != "" {
		return string(e)
	}
	return "-"
}

package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/lint"
	"github.com/nodrop-dev/nodrop/manifest"
)

func newLintCommand() *cobra.Command {
	var (
		files, kustomize []string
		chart            manifest.Chart
		deployment       string
		asJSON, noImages bool
	)
	cmd := &cobra.Command{
		Use:   "lint -f app.yaml [flags]",
		Short: "Review manifests for what loses requests in a rollout, with no cluster",
		Long: `Review Deployments (files with -f, kustomize directories with -k) for what
loses requests in a rollout: no readiness probe, a TCP one, no preStop, a grace
period shorter than preStop, a shell as PID 1 (in the manifest, or in the
image's ENTRYPOINT/CMD when the local Docker engine has the image), one replica
with maxUnavailable 1; and for what else a reviewer would flag (no PDB, a
security context short of the restricted Pod Security Standard).

Each finding names the catalogue variant that measures its mechanism
(nodrop render VARIANT shows it; nodrop check measures yours).

Exit status: 0 no finding, 1 findings, 2 bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 && len(kustomize) == 0 && chart.Path == "" {
				return usagef("name your manifests with -f FILE, -k DIR or --chart DIR")
			}
			objs, err := readManifests(cmd.InOrStdin(), files, kustomize, chart)
			if err != nil {
				return usageError{err}
			}
			o := lint.Options{Deployment: deployment, Images: lint.LocalImages}
			if noImages {
				o.Images = nil
			}
			fs := lint.Check(objs, o)
			out := cmd.OutOrStdout()
			if asJSON {
				if fs == nil {
					fs = []lint.Finding{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(fs); err != nil {
					return err
				}
			} else if len(fs) == 0 {
				fmt.Fprintln(out, "no findings")
			} else {
				lint.Write(out, fs)
			}
			if len(fs) > 0 {
				return exitError{code: exitLost, msg: fmt.Sprintf("%d findings", len(fs))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory, or - for standard input; repeatable")
	f.StringArrayVarP(&kustomize, "kustomize", "k", nil, "kustomize directory; repeatable")
	chartFlags(f, &chart)
	f.StringVar(&deployment, "deployment", "", "review only this Deployment")
	f.BoolVar(&asJSON, "json", false, "print the findings as JSON")
	f.BoolVar(&noImages, "no-images", false, "do not inspect images in the local Docker engine")
	return cmd
}

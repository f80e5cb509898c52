package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/internal/kruise"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/traefik"
)

func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Bring nodrop's kind cluster up or down"}
	var (
		name    string
		verbose bool
		up      upOptions
	)
	upCmd := &cobra.Command{
		Use:   "up",
		Short: "Create the kind cluster (building the node image offline if needed) and load nodrop's images",
		Long: `Create the kind cluster from a kind config, building the node image offline
first unless --image names one, then build nodrop's sample images and load them
into the nodes.

A second "up" reuses the cluster only when it was made from the same config and
node image, and says so; a cluster made otherwise is refused unless --recreate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			up.name = name
			_, err := clusterUp(cmd.Context(), progress.New(cmd.ErrOrStderr(), verbose), up)
			return err
		},
	}
	f := upCmd.Flags()
	f.StringVar(&up.config, "config", "", "kind config file (default: nodrop's single-node config, built in)")
	f.StringVar(&up.image, "image", "", "node image to use instead of building one offline (e.g. kindest/node:v1.37.2 where a registry is reachable)")
	f.StringVar(&up.k8sVersion, "kubernetes-version", nodeimage.DefaultKubernetesVersion, "Kubernetes release of the offline node image")
	f.BoolVar(&up.recreate, "recreate", false, "replace an existing cluster that was made from another config or image")
	f.BoolVar(&up.withKruise, "with-kruise", false, "also build OpenKruise "+kruise.Version+"'s kruise-manager from the Go module proxy and install it (SidecarSet hot upgrades)")
	f.BoolVar(&up.withIngress, "with-ingress", false, "also build the Traefik "+traefik.Version+" ingress controller from the Go module proxy and install it (check --via ingress, the proxy specs)")

	downCmd := &cobra.Command{
		Use:   "down",
		Short: "Delete the cluster and its Docker network",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			state, err := dockerAndCache(cmd)
			if err != nil {
				return err
			}
			return cluster.Down(cmd.Context(), name, state, progress.New(cmd.ErrOrStderr(), verbose))
		},
	}
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "Say whether the cluster exists, what it was made from and whether it is ready",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return clusterStatus(cmd, name) },
	}
	cmd.PersistentFlags().StringVar(&name, "name", cluster.DefaultName, "cluster name")
	cmd.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "show the output of every command")
	cmd.AddCommand(upCmd, downCmd, statusCmd)
	return cmd
}

// clusterStatus says whether the cluster exists, what it was made from
// and whether its add-ons run; exit 1 when it does not exist.
func clusterStatus(cmd *cobra.Command, name string) error {
	state, err := dockerAndCache(cmd)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	exists, err := cluster.Exists(name)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintf(out, "cluster %q: does not exist\n", name)
		return exitError{code: exitLost}
	}
	c, id, err := cluster.Connect(cmd.Context(), name, state)
	if c == nil {
		return err
	}
	fmt.Fprintf(out, "cluster %q: exists\n  kubeconfig  %s\n  node IPs    %s\n", name, c.Kubeconfig, strings.Join(c.NodeIPs, " "))
	if err != nil {
		fmt.Fprintf(out, "  identity    unknown: %v\n", err)
	} else {
		fmt.Fprintf(out, "  node image  %s\n  config hash %s\n", id.NodeImage, id.ConfigHash[:12])
	}
	for _, a := range []struct{ what, ns, name, flag string }{
		{"OpenKruise", kruise.Namespace, kruise.Deployment, "--with-kruise"},
		{"ingress", traefik.Namespace, traefik.Name, "--with-ingress"},
	} {
		fmt.Fprintf(out, "  %-11s %s\n", a.what, addOn(cmd.Context(), c.Client, a.ns, a.name, a.flag))
	}
	return nil
}

// dockerAndCache checks for a Docker engine and returns the cache
// directory, which also holds clusters' kubeconfigs.
func dockerAndCache(cmd *cobra.Command) (string, error) {
	state, err := cacheDir()
	if err != nil {
		return "", err
	}
	return state, requireDocker(cmd.Context())
}

type upOptions struct {
	name, config, image, k8sVersion string
	recreate, withKruise            bool
	withIngress                     bool
}

// clusterUp is `nodrop cluster up`: the node image, the cluster, the
// sample images in it.
func clusterUp(ctx context.Context, log *progress.Logger, o upOptions) (*cluster.Ready, error) {
	state, err := cacheDir()
	if err != nil {
		return nil, err
	}
	if _, _, err := cluster.LoadConfig(o.config); err != nil {
		return nil, usageError{err}
	}
	if err := requireDocker(ctx); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, err := cluster.Setup(ctx, cluster.SetupOptions{
		Options: cluster.Options{
			Name: o.name, ConfigPath: o.config, NodeImage: o.image, StateDir: state, Recreate: o.recreate,
			Log: log, Program: self,
		},
		KubernetesVersion: o.k8sVersion,
		WithKruise:        o.withKruise,
		WithIngress:       o.withIngress,
	})
	if errors.Is(err, cluster.ErrBadInput) {
		return nil, usageError{err}
	}
	return r, err
}

// addOn says whether a Deployment nodrop installs (OpenKruise, Traefik)
// is there, with its image and how many replicas are available.
func addOn(ctx context.Context, c kubernetes.Interface, ns, name, flag string) string {
	d, err := c.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "not installed (nodrop cluster up " + flag + ")"
	}
	if err != nil {
		return "unknown: " + err.Error()
	}
	image := ""
	if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
		image = cs[0].Image
	}
	return fmt.Sprintf("%s (%d of %d available)", image, d.Status.AvailableReplicas, d.Status.Replicas)
}

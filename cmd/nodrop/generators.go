package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/incluster"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/scenario"
)

// loadFromOptions say where a run's load comes from: host (this
// process) or cluster (generator pods of a Job, incluster).
type loadFromOptions struct {
	from  string
	pods  int
	nodes []string
	image string
	cpu   string
}

// flags adds --load-from and its flags to f; --generator-image where the
// command runs on clusters of the user's own too.
func (o *loadFromOptions) flags(f *pflag.FlagSet, ownClusters bool) {
	f.StringVar(&o.from, "load-from", "host", "where the load comes from: host (this process, through a NodePort) or cluster (generator pods of a Job in the cluster, to the Service's ClusterIP, their outcomes merged into one verdict)")
	f.IntVar(&o.pods, "load-pods", 2, "--load-from cluster: how many generator pods share the load, spread across the nodes")
	f.StringSliceVar(&o.nodes, "load-nodes", nil, "--load-from cluster: run the generator pods on these nodes (comma-separated), spread across them")
	f.StringVar(&o.cpu, "load-cpu", incluster.DefaultCPU.String(), "--load-from cluster: the CPU each generator pod requests (a pod that requests none is the last a busy node runs, and its load stands still)")
	if ownClusters {
		f.StringVar(&o.image, "generator-image", "", "--load-from cluster: the generator's image (default on nodrop's kind cluster: built from this binary and loaded into the nodes; on a cluster of your own: required, the image nodrop images generator builds, pushed where the nodes pull from)")
	}
}

// check refuses --load-from and its flags as bad input: ownCluster says
// the run is on a cluster of the user's own, via names the proxy in
// front (--via).
func (o loadFromOptions) check(ownCluster bool, via string) error {
	switch o.from {
	case "", "host":
		if (o.pods != 0 && o.pods != 2) || len(o.nodes) > 0 || o.image != "" || (o.cpu != "" && o.cpu != incluster.DefaultCPU.String()) {
			return usagef("--load-pods, --load-nodes, --load-cpu and --generator-image are for --load-from cluster")
		}
		return nil
	case "cluster":
	default:
		return usagef("--load-from %q: want host or cluster", o.from)
	}
	if o.pods < 1 || o.pods > 50 {
		return usagef("--load-pods must be 1–50, got %d", o.pods)
	}
	if _, err := o.cpuRequest(); err != nil {
		return err
	}
	if ownCluster && o.image == "" {
		return usagef("--load-from cluster on a cluster of your own needs --generator-image: an image of this nodrop its nodes can pull")
	}
	if via != "" && via != "ingress" {
		return usagef("--load-from cluster goes to the Service's ClusterIP: with --via, only through the ingress controller")
	}
	return nil
}

// generators are the load generator pods --load-from cluster asks for
// (nil for --load-from host): on nodrop's kind cluster (clusterName)
// their image is this binary's, built and loaded into the nodes;
// elsewhere it is --generator-image.
func (o loadFromOptions) generators(ctx context.Context, clusterName string, env scenario.Env, log *progress.Logger) (scenario.Sender, error) {
	if o.from != "cluster" {
		return nil, nil
	}
	image := o.image
	if image == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("the generator's program: %w", err)
		}
		dir, err := cacheDir()
		if err != nil {
			return nil, err
		}
		if image, err = images.Generator(ctx, self, dir, log); err != nil {
			return nil, err
		}
		if err := cluster.LoadImages(ctx, clusterName, []string{image}, log); err != nil {
			return nil, err
		}
	}
	cpu, err := o.cpuRequest()
	if err != nil {
		return nil, err
	}
	return incluster.Generators{REST: env.REST, Client: env.Client, Image: image, Pods: o.pods, Nodes: o.nodes, CPU: cpu, Log: log}, nil
}

// cpuRequest is --load-cpu as a quantity: zero (incluster's default)
// when not given.
func (o loadFromOptions) cpuRequest() (resource.Quantity, error) {
	if o.cpu == "" {
		return resource.Quantity{}, nil
	}
	q, err := resource.ParseQuantity(o.cpu)
	if err != nil || q.Sign() <= 0 {
		return resource.Quantity{}, usagef("--load-cpu %q: want a CPU quantity such as 500m or 1", o.cpu)
	}
	return q, nil
}

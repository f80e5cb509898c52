package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/incluster"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/scenario"
)

// checkLoadFrom refuses --load-from and its flags as bad input.
func (o checkOptions) checkLoadFrom() error {
	switch o.loadFrom {
	case "host":
		if o.loadPods != 2 || len(o.loadNodes) > 0 || o.generatorImage != "" {
			return usagef("--load-pods, --load-nodes and --generator-image are for --load-from cluster")
		}
		return nil
	case "cluster":
	default:
		return usagef("--load-from %q: want host or cluster", o.loadFrom)
	}
	if o.loadPods < 1 || o.loadPods > 50 {
		return usagef("--load-pods must be 1–50, got %d", o.loadPods)
	}
	if (o.kubeconfig != "" || o.kubeContext != "") && o.generatorImage == "" {
		return usagef("--load-from cluster on a cluster of your own needs --generator-image: an image of this nodrop its nodes can pull")
	}
	if o.via != "" && o.via != "ingress" {
		return usagef("--load-from cluster goes to the Service's ClusterIP: with --via, only through the ingress controller")
	}
	return nil
}

// generators are the load generator pods --load-from cluster asks for:
// on nodrop's kind cluster their image is this binary's, built and
// loaded into the nodes; on another cluster it is --generator-image.
func generators(ctx context.Context, o checkOptions, env scenario.Env, log *progress.Logger) (scenario.Sender, error) {
	image := o.generatorImage
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
		if err := cluster.LoadImages(ctx, o.clusterName, []string{image}, log); err != nil {
			return nil, err
		}
	}
	return incluster.Generators{REST: env.REST, Client: env.Client, Image: image, Pods: o.loadPods, Nodes: o.loadNodes, Log: log}, nil
}

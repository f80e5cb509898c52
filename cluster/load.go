package cluster

import (
	"context"
	"fmt"
	"io"
	"os/exec"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// LoadImages puts images from the local Docker engine into every node's
// containerd, skipping nodes that already have them (tags are content
// hashes, so same tag means same image).
func LoadImages(ctx context.Context, name string, refs []string, log *progress.Logger) error {
	nodes, err := provider(log).ListInternalNodes(name)
	if err != nil {
		return fmt.Errorf("listing nodes of %q: %w", name, err)
	}
	for _, ref := range refs {
		for _, n := range nodes {
			if _, err := nodeutils.ImageID(n, ref); err == nil {
				continue
			}
			step := log.Start("loading %s into node %s", ref, n)
			if err := loadImage(ctx, n, ref); err != nil {
				return step.Fail(err)
			}
			step.Done()
		}
	}
	return nil
}

func loadImage(ctx context.Context, n nodes.Node, ref string) error {
	save := exec.CommandContext(ctx, "docker", "save", ref)
	out, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	if err := save.Start(); err != nil {
		return err
	}
	loadErr := nodeutils.LoadImageArchive(n, out)
	io.Copy(io.Discard, out)
	if err := save.Wait(); err != nil {
		return fmt.Errorf("docker save %s: %w", ref, err)
	}
	return loadErr
}

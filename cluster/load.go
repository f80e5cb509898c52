package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

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
	for _, n := range nodes {
		have, err := nodeImages(n)
		if err != nil {
			return fmt.Errorf("listing images of node %s: %w", n, err)
		}
		for _, ref := range refs {
			if have[normalize(ref)] {
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

// nodeImages lists the references in a node's containerd. nodrop's
// offline node image has ctr but no crictl (which kind's own check uses).
func nodeImages(n nodes.Node) (map[string]bool, error) {
	var out bytes.Buffer
	if err := n.Command("ctr", "--namespace=k8s.io", "images", "list", "-q").SetStdout(&out).Run(); err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, line := range strings.Split(out.String(), "\n") {
		have[strings.TrimSpace(line)] = true
	}
	return have, nil
}

// normalize spells a Docker reference as containerd stores it.
func normalize(ref string) string {
	first, _, hasSlash := strings.Cut(ref, "/")
	switch {
	case !hasSlash:
		return "docker.io/library/" + ref
	case strings.ContainsAny(first, ".:") || first == "localhost":
		return ref
	}
	return "docker.io/" + ref
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

// NodeImages lists, per node, the image references its containerd holds
// (sha256 digests left out).
func NodeImages(name string) (map[string][]string, error) {
	ns, err := provider(nil).ListInternalNodes(name)
	if err != nil {
		return nil, fmt.Errorf("listing nodes of %q: %w", name, err)
	}
	out := map[string][]string{}
	for _, n := range ns {
		have, err := nodeImages(n)
		if err != nil {
			return nil, fmt.Errorf("listing images of node %s: %w", n, err)
		}
		var refs []string
		for ref := range have {
			if ref != "" && !strings.HasPrefix(ref, "sha256:") && !strings.Contains(ref, "@sha256:") {
				refs = append(refs, ref)
			}
		}
		sort.Strings(refs)
		out[n.String()] = refs
	}
	return out, nil
}

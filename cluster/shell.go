package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/nodrop-dev/nodrop/chaos"
)

// Shell runs shell scripts on a kind cluster's nodes, as root in each
// node's container (what the chaos faults need: kube-proxy paused, a
// container killed). It is a scenario.NodeShell.
type Shell struct {
	// Cluster is the kind cluster's name.
	Cluster string
}

var (
	_ chaos.NodePauser = Shell{}
	_ chaos.NodeNetns  = Shell{}
)

// Nodes are the cluster's node names, which are also Kubernetes'.
func (s Shell) Nodes(context.Context) ([]string, error) {
	list, err := s.list()
	if err != nil {
		return nil, err
	}
	names := make([]string, len(list))
	for i, n := range list {
		names[i] = n.String()
	}
	return names, nil
}

// Run runs script with sh -c on node and returns its output, standard
// error included.
func (s Shell) Run(ctx context.Context, node, script string) (string, error) {
	n, err := s.node(node)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	cmd := n.CommandContext(ctx, "sh", "-c", script)
	cmd.SetStdout(&out)
	cmd.SetStderr(&out)
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("on node %s: %w: %s", node, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

func (s Shell) list() ([]nodes.Node, error) {
	list, err := provider(nil).ListInternalNodes(s.Cluster)
	if err != nil {
		return nil, fmt.Errorf("listing nodes of cluster %q: %w", s.Cluster, err)
	}
	return list, nil
}

// PauseNode freezes every process of node (its kind container, docker
// pause), or thaws them: a node that stops answering. The node's kernel,
// shared with the host, still answers the network for it.
func (s Shell) PauseNode(ctx context.Context, node string, paused bool) error {
	if _, err := s.node(node); err != nil {
		return err
	}
	verb := "unpause"
	if paused {
		verb = "pause"
	}
	if out, err := exec.CommandContext(ctx, "docker", verb, node).CombinedOutput(); err != nil {
		return fmt.Errorf("docker %s %s: %w: %s", verb, node, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PausedNodes are the cluster's nodes whose containers are paused.
func (s Shell) PausedNodes(ctx context.Context) ([]string, error) {
	list, err := s.list()
	if err != nil {
		return nil, err
	}
	var paused []string
	for _, n := range list {
		out, err := exec.CommandContext(ctx, "docker", "inspect", "--format", "{{.State.Paused}}", n.String()).Output()
		if err != nil {
			return nil, fmt.Errorf("inspecting node %s: %w", n, err)
		}
		if strings.TrimSpace(string(out)) == "true" {
			paused = append(paused, n.String())
		}
	}
	return paused, nil
}

func (s Shell) node(name string) (nodes.Node, error) {
	list, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, n := range list {
		if n.String() == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("cluster %q has no node %q", s.Cluster, name)
}

// Netns is the path of node's network namespace: its container's, by the
// PID Docker gives for it.
func (s Shell) Netns(ctx context.Context, node string) (string, error) {
	if _, err := s.node(node); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", node).CombinedOutput()
	pid := strings.TrimSpace(string(out))
	if err != nil || pid == "" || pid == "0" {
		return "", fmt.Errorf("docker inspect %s: %v: %s", node, err, pid)
	}
	return "/proc/" + pid + "/ns/net", nil
}

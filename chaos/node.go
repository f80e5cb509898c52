package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/scenario"
)

// NodePauser freezes a node whole, every process on it, as a node that
// hangs does (on kind: its container paused). scenario.Env.Nodes offers it
// where it can.
type NodePauser interface {
	PauseNode(ctx context.Context, node string, paused bool) error
	// PausedNodes are the nodes paused now.
	PausedNodes(ctx context.Context) ([]string, error)
}

// PauseNode freezes the node of the oldest serving pod of the
// Deployment for d: its kubelet, its kube-proxy and its pods stop, while
// the cluster still thinks them well (a node is marked NotReady only
// after its heartbeats have been missing for 40 s or more). Connections
// other nodes send to its pods are accepted by its kernel, which the
// host shares, and never answered. A node that runs the API server is
// refused: nothing would be left to watch the run.
func PauseNode(d time.Duration, at scenario.FaultAt) scenario.Fault {
	return scenario.Fault{
		Name: fmt.Sprintf("node paused %s", d), At: at, For: d, NeedsNodes: true, Mechanism: nodePaused,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			pauser, ok := l.Env.Nodes.(NodePauser)
			if !ok {
				return scenario.Injected{}, fmt.Errorf("%w: pause-node needs nodes nodrop can freeze (a kind cluster)", scenario.ErrBadInput)
			}
			pod, err := servingPod(ctx, l)
			if err != nil {
				return scenario.Injected{}, err
			}
			node := pod.Spec.NodeName
			out, err := l.Env.Nodes.Run(ctx, node, "pgrep -x kube-apiserver || true")
			if err != nil {
				return scenario.Injected{}, err
			}
			if strings.TrimSpace(out) != "" {
				return scenario.Injected{}, fmt.Errorf("%w: pod %s runs on node %s, which runs the API server: pausing it would stop the cluster; pause-node needs the pods on workers (nodrop cluster up --config kind-config-multinode.yaml --name nodrop-multi)", scenario.ErrBadInput, pod.Name, node)
			}
			if err := pauser.PauseNode(ctx, node, true); err != nil {
				return scenario.Injected{}, err
			}
			return scenario.Injected{Pod: pod.Name, On: "node " + node, Undo: func(ctx context.Context) error {
				return pauser.PauseNode(ctx, node, false)
			}}, nil
		},
	}
}

package scenario

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodrop-dev/nodrop/kube"
)

// ErrNoNodeAddress: no node of the cluster has an InternalIP, so nodrop
// cannot tell where its NodePorts answer (give the address or a URL).
var ErrNoNodeAddress = errors.New("no node has an InternalIP")

// NewEnv is the one way an Env is made, for any cluster (nodrop's kind
// cluster of one or three nodes, or one of the user's): env holds the
// caller's parts as given (log, dump, node shell, ingress controller,
// helper program, witness, load slots, a URL or node address), and NewEnv
// adds the cluster's. Its client is made from rc with room for a run's
// informers and waits (QPS 50, burst 100); zero Timeouts are
// kube.DefaultTimeouts; without a NodeIP or URL, the first node's
// InternalIP is where NodePorts are reached.
func NewEnv(ctx context.Context, rc *rest.Config, env Env) (Env, error) {
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 50, 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return env, fmt.Errorf("a client for the cluster: %w", err)
	}
	env.Client, env.REST = client, rc
	if env.Timeouts == (kube.Timeouts{}) {
		env.Timeouts = kube.DefaultTimeouts()
	}
	if env.NodeIP == "" && env.URL == "" {
		if env.NodeIP, err = firstNodeIP(ctx, client); err != nil {
			return env, err
		}
	}
	return env, nil
}

// firstNodeIP is the InternalIP of the first node listed (by name: a kind
// cluster's control plane, where a fault on a worker does not cut the way
// in).
func firstNodeIP(ctx context.Context, c kubernetes.Interface) (string, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				return a.Address, nil
			}
		}
	}
	return "", ErrNoNodeAddress
}

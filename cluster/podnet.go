package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// cniConfig is the node's bridge CNI config for its own pod range. The
// node image ships one for 10.244.0.0/24, right for a single node; with
// several nodes each gets the range the controller manager allocated it
// (node.spec.podCIDR), and routes to the others' ranges via their
// addresses: what kind's kindnetd does, without its image.
const cniConfig = `{
  "cniVersion": "0.4.0",
  "name": "nodrop-bridge",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "%s"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// configurePodNetwork gives each node of a multi-node cluster its own pod
// range and routes to the others, then recreates pods that started with
// the image's default range on a node that does not own it.
func configurePodNetwork(ctx context.Context, p *kindcluster.Provider, name string, client kubernetes.Interface, log *progress.Logger) error {
	kindNodes, err := p.ListInternalNodes(name)
	if err != nil || len(kindNodes) < 2 {
		return err
	}
	step := log.Start("configuring pod networking across %d nodes", len(kindNodes))
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return step.Fail(err)
	}
	cidrs := map[string]string{} // node name → pod range
	addrs := map[string]string{} // node name → address
	for _, n := range list.Items {
		if n.Spec.PodCIDR == "" {
			return step.Fail(fmt.Errorf("node %s has no pod range (podCIDR)", n.Name))
		}
		cidrs[n.Name] = n.Spec.PodCIDR
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				addrs[n.Name] = a.Address
			}
		}
	}
	for _, n := range kindNodes {
		own, ok := cidrs[n.String()]
		if !ok {
			return step.Fail(fmt.Errorf("node %s is not registered", n))
		}
		script := []string{fmt.Sprintf("cat > /etc/cni/net.d/10-nodrop-bridge.conflist <<'EOF'\n"+cniConfig+"EOF", own)}
		for other, cidr := range cidrs {
			if other != n.String() {
				script = append(script, fmt.Sprintf("ip route replace %s via %s", cidr, addrs[other]))
			}
		}
		if err := nodeRun(n, strings.Join(script, "\n")); err != nil {
			return step.Fail(fmt.Errorf("node %s: %w", n, err))
		}
	}
	// Pods that got an address before their node had its own range.
	pods, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return step.Fail(err)
	}
	for _, pod := range pods.Items {
		if pod.Spec.HostNetwork || pod.Status.PodIP == "" || pod.Spec.NodeName == "" {
			continue
		}
		if !inRange(pod.Status.PodIP, cidrs[pod.Spec.NodeName]) {
			if err := client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				return step.Fail(err)
			}
		}
	}
	step.Done()
	return nil
}

func nodeRun(n nodes.Node, script string) error {
	var out strings.Builder
	err := n.Command("sh", "-c", script).SetStdout(&out).SetStderr(&out).Run()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out.String())
	}
	return nil
}

func inRange(ip, cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	return err == nil && n.Contains(net.ParseIP(ip))
}

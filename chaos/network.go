package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/scenario"
)

// ruleComment marks the iptables rules of the packet-loss and delay
// faults, so that a run killed outright leaves none behind that Resume
// cannot find.
const ruleComment = "nodrop-fault"

// removeRules deletes every rule of those faults on a node and prints
// "iptables-rule" for each.
var removeRules = `command -v iptables >/dev/null && iptables -S FORWARD | grep -- '--comment ` + ruleComment + `' | sed 's/^-A /-D /' | while read -r r; do eval iptables $r && echo iptables-rule; done`

// PacketLoss drops share (0 to 1) of the packets to and from one serving
// pod (the oldest, mid-rollout an old one), at random, for d: a lossy
// link or an overloaded NIC in front of that pod. TCP sends again what
// was lost, so a request is lost only when its handshake or its data is
// lost so often that the retransmissions (the first SYN again after 1 s,
// data after 200 ms or more) outlast the client's timeout. The rules go
// in the FORWARD chain of the pod's node, ahead of kube-proxy's, and carry
// a comment Resume looks for.
func PacketLoss(share float64, d time.Duration, at scenario.FaultAt) scenario.Fault {
	return packetLoss(share, d, at, podPackets)
}

// NodePacketLoss is PacketLoss on every packet the node of a serving pod
// forwards through its interface (its pods' traffic with the rest of the
// cluster and the load), as netem's loss on the node's interface would.
func NodePacketLoss(share float64, d time.Duration, at scenario.FaultAt) scenario.Fault {
	return packetLoss(share, d, at, nodePackets)
}

func packetLoss(share float64, d time.Duration, at scenario.FaultAt, whose packets) scenario.Fault {
	prob := strconv.FormatFloat(share, 'f', -1, 64)
	return scenario.Fault{
		Name: fmt.Sprintf("%s%% of %s packets dropped for %s", strconv.FormatFloat(share*100, 'f', -1, 64), whose, d), At: at, For: d, NeedsNodes: true, Mechanism: packetsDropped,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			t, err := whose.pick(ctx, l)
			if err != nil {
				return scenario.Injected{}, err
			}
			drop := " -m statistic --mode random --probability " + prob + " -j DROP"
			undo, err := forwardRules(ctx, l.Env.Nodes, t.node, t.in+drop, t.out+drop)
			if err != nil {
				return scenario.Injected{}, fmt.Errorf("dropping %s packets: %w", whose, err)
			}
			return scenario.Injected{Pod: t.pod, On: t.on, Undo: undo}, nil
		},
	}
}

// packets says whose packets a network fault strikes.
type packets bool

const (
	podPackets  packets = false // one serving pod's
	nodePackets packets = true  // all its node forwards through its interface
)

func (p packets) String() string {
	if p == nodePackets {
		return "a node's"
	}
	return "a pod's"
}

// struck is what a network fault strikes: the rules' matches for what
// comes in and what goes out, on node.
type struck struct {
	node, in, out string
	pod           string // the pod, when only its packets are struck
	on            string
}

// ifaceOf is, on a node, the interface of its default route.
const ifaceOf = `$(ip -o route show default | awk '{print $5; exit}')`

// pick chooses the oldest serving pod, and with nodePackets its node.
func (p packets) pick(ctx context.Context, l *scenario.Live) (struck, error) {
	pod, ip, err := servingPodIP(ctx, l)
	if err != nil {
		return struck{}, err
	}
	node := pod.Spec.NodeName
	if p == podPackets {
		return struck{node: node, in: "-d " + ip, out: "-s " + ip, pod: pod.Name, on: "node " + node}, nil
	}
	pods, err := l.Pods(ctx)
	if err != nil {
		return struck{}, err
	}
	n := 0
	for _, q := range pods {
		if q.Spec.NodeName == node && q.DeletionTimestamp == nil {
			n++
		}
	}
	return struck{node: node, in: "-i " + ifaceOf, out: "-o " + ifaceOf, on: fmt.Sprintf("node %s, %d of the %d pods", node, n, len(pods))}, nil
}

// servingPodIP is servingPod with its IP.
func servingPodIP(ctx context.Context, l *scenario.Live) (*corev1.Pod, string, error) {
	pod, err := servingPod(ctx, l)
	if err != nil {
		return nil, "", err
	}
	if pod.Status.PodIP == "" {
		return nil, "", fmt.Errorf("pod %s has no IP", pod.Name)
	}
	return pod, pod.Status.PodIP, nil
}

// forwardRules puts iptables rules (each a match and a target) at the
// head of node's FORWARD chain, ahead of kube-proxy's, with the comment
// Resume looks for; undo deletes them. If one cannot be added, none is
// left.
func forwardRules(ctx context.Context, shell scenario.NodeShell, node string, rules ...string) (undo func(context.Context) error, err error) {
	cmd := func(op string) string {
		var lines []string
		for _, r := range rules {
			match, target, _ := strings.Cut(r, " -j ")
			lines = append(lines, fmt.Sprintf("iptables %s FORWARD %s -m comment --comment %s -j %s", op, match, ruleComment, target))
		}
		if op == "-D" {
			return strings.Join(lines, "; ") + "; true"
		}
		return strings.Join(lines, " && ")
	}
	undo = func(ctx context.Context) error {
		if out, err := shell.Run(ctx, node, cmd("-D")); err != nil {
			return fmt.Errorf("removing rules on %s: %w: %s", node, err, strings.TrimSpace(out))
		}
		return nil
	}
	if _, err := shell.Run(ctx, node, cmd("-I")); err != nil {
		return nil, errors.Join(fmt.Errorf("on %s: %w", node, err), undo(context.WithoutCancel(ctx)))
	}
	return undo, nil
}

// parseLoss reads packet-loss's value: P%[/DURATION], P from above 0 to
// 100, the duration DefaultPause unless given.
func parseLoss(arg string) (float64, time.Duration, error) {
	bad := fmt.Errorf("%w: packet-loss=%s: want the share of packets dropped and, after a slash, for how long (1s to 5m), e.g. packet-loss=5%%/10s", ErrBadFault, arg)
	share, dur, hasDur := strings.Cut(arg, "/")
	num, ok := strings.CutSuffix(share, "%")
	if !ok {
		return 0, 0, bad
	}
	p, err := strconv.ParseFloat(num, 64)
	if err != nil || p <= 0 || p > 100 {
		return 0, 0, bad
	}
	d, ok := lasting(dur, hasDur, DefaultPause)
	if !ok {
		return 0, 0, bad
	}
	return p / 100, d, nil
}

// kubeProxyReady is how long RestartKubeProxy waits for a new kube-proxy
// pod on every node whose pod it deleted.
const kubeProxyReady = 2 * time.Minute

// RestartKubeProxy deletes kube-proxy's pods (the DaemonSet kube-proxy in
// kube-system), as an update of that DaemonSet or a node's maintenance
// restarts it, and lets the DaemonSet start new ones. Its rules stay in
// the kernel while it is down; the new one reads every Service and
// EndpointSlice and writes them anew. The fault ends when a new kube-proxy
// pod is ready on every node that had one (at most 2 minutes). It needs no
// node shell: any cluster with a kube-proxy DaemonSet will do. (Killing
// the process instead would let the kubelet's crash back-off, 10 s and
// doubling, decide how long it stays down.)
func RestartKubeProxy(at scenario.FaultAt) scenario.Fault {
	return scenario.Fault{
		Name: "kube-proxy restarted", At: at, Mechanism: kubeProxyRestarted,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			return restartKubeProxy(ctx, l.Env.Client)
		},
	}
}

func restartKubeProxy(ctx context.Context, c kubernetes.Interface) (scenario.Injected, error) {
	ds, err := c.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return scenario.Injected{}, fmt.Errorf("%w: restart-kube-proxy: the cluster has no DaemonSet kube-system/kube-proxy (a CNI that replaces kube-proxy has nothing to restart)", scenario.ErrBadInput)
	}
	if err != nil {
		return scenario.Injected{}, fmt.Errorf("finding kube-proxy: %w", err)
	}
	selector := metav1.FormatLabelSelector(ds.Spec.Selector)
	pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return scenario.Injected{}, fmt.Errorf("listing kube-proxy's pods: %w", err)
	}
	old := map[string]string{} // node: the pod deleted there
	for _, p := range pods.Items {
		if err := c.CoreV1().Pods("kube-system").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return scenario.Injected{}, fmt.Errorf("deleting kube-proxy pod %s: %w", p.Name, err)
		}
		old[p.Spec.NodeName] = p.Name
	}
	if len(old) == 0 {
		return scenario.Injected{}, errors.New("kube-proxy has no pods to restart")
	}
	back := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, kubeProxyReady)
		defer cancel()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: selector})
			missing := maps.Clone(old)
			if err == nil {
				for _, p := range pods.Items {
					if p.Name != old[p.Spec.NodeName] && p.DeletionTimestamp == nil && kube.PodReady(&p) {
						delete(missing, p.Spec.NodeName)
					}
				}
				if len(missing) == 0 {
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("no new kube-proxy ready within %s on %s", kubeProxyReady, strings.Join(slices.Sorted(maps.Keys(missing)), ", "))
			case <-tick.C:
			}
		}
	}
	on := fmt.Sprintf("%d pods deleted", len(old))
	if len(old) == 1 {
		on = "1 pod deleted"
	}
	return scenario.Injected{On: on, Undo: back}, nil
}

package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/kind/pkg/log"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// ReadyTimeout bounds the wait for nodes, CoreDNS and kube-proxy.
const ReadyTimeout = 3 * time.Minute

// waitReady waits until every node is Ready, CoreDNS is available and
// kube-proxy runs on every node: before that, a Service does not route.
func waitReady(ctx context.Context, c *Cluster, l *progress.Logger) error {
	step := l.Start("waiting for nodes, CoreDNS and kube-proxy")
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		ok, why := clusterReady(ctx, c)
		last = why
		return ok, nil
	})
	if err != nil {
		return step.Fail(fmt.Errorf("not ready after %s: %s", ReadyTimeout, last))
	}
	step.Done()
	return nil
}

// waitAPIServer waits until the API server says it is ready (/readyz:
// etcd, informers, the RBAC bootstrap roles).
func waitAPIServer(ctx context.Context, c *Cluster, l *progress.Logger) error {
	step := l.Start("waiting for the API server")
	var last error
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, ReadyTimeout, true, func(ctx context.Context) (bool, error) {
		_, last = c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return last == nil, nil
	})
	if err != nil {
		return step.Fail(fmt.Errorf("not ready after %s: %v", ReadyTimeout, last))
	}
	step.Done()
	return nil
}

func clusterReady(ctx context.Context, c *Cluster) (bool, string) {
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	if len(nodes.Items) == 0 {
		return false, "no nodes registered"
	}
	for _, n := range nodes.Items {
		if !nodeReady(n) {
			return false, "node " + n.Name + " is not Ready"
		}
	}
	dns, err := c.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return false, "coredns: " + err.Error()
	}
	if dns.Status.AvailableReplicas < 1 || dns.Status.UpdatedReplicas != dns.Status.Replicas {
		return false, fmt.Sprintf("coredns has %d of %d replicas available", dns.Status.AvailableReplicas, dns.Status.Replicas)
	}
	proxy, err := c.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		return false, "kube-proxy: " + err.Error()
	}
	if proxy.Status.DesiredNumberScheduled == 0 || proxy.Status.NumberReady != proxy.Status.DesiredNumberScheduled {
		return false, fmt.Sprintf("kube-proxy is ready on %d of %d nodes", proxy.Status.NumberReady, proxy.Status.DesiredNumberScheduled)
	}
	return true, ""
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// kindLogger shows kind's user-facing messages as nodrop progress lines.
type kindLogger struct{ l *progress.Logger }

func (k kindLogger) Warn(message string)               { say(k.l, message) }
func (k kindLogger) Warnf(format string, args ...any)  { say(k.l, fmt.Sprintf(format, args...)) }
func (k kindLogger) Error(message string)              { say(k.l, message) }
func (k kindLogger) Errorf(format string, args ...any) { say(k.l, fmt.Sprintf(format, args...)) }
func (k kindLogger) V(level log.Level) log.InfoLogger  { return kindInfo{k.l, level == 0 && k.l != nil} }

type kindInfo struct {
	l  *progress.Logger
	on bool
}

func (i kindInfo) Info(message string) {
	if i.on {
		say(i.l, message)
	}
}

func (i kindInfo) Infof(format string, args ...any) {
	if i.on {
		say(i.l, fmt.Sprintf(format, args...))
	}
}

// say prints one of kind's messages as a single indented line, without
// its status spinner's blank lines, and without the warnings about the
// per-cluster network, which nodrop chooses on purpose.
func say(l *progress.Logger, message string) {
	message = strings.TrimSpace(message)
	if message == "" || strings.Contains(message, "KIND_EXPERIMENTAL_DOCKER_NETWORK") || strings.Contains(message, "Here be dragons") {
		return
	}
	l.Printf("  kind: %s", message)
}

func (i kindInfo) Enabled() bool { return i.on }

package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
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
		ok, why := clusterReady(ctx, c.Client)
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
		last = apiServerReady(ctx, c.Client)
		return last == nil, nil
	})
	if err != nil {
		return step.Fail(fmt.Errorf("not ready after %s: %v", ReadyTimeout, last))
	}
	step.Done()
	return nil
}

// apiServerReady asks the API server whether it is ready (/readyz).
func apiServerReady(ctx context.Context, client kubernetes.Interface) error {
	_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	return err
}

func clusterReady(ctx context.Context, client kubernetes.Interface) (bool, string) {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
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
	dns, err := client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return false, "coredns: " + err.Error()
	}
	if dns.Status.AvailableReplicas < 1 || dns.Status.UpdatedReplicas != dns.Status.Replicas {
		return false, fmt.Sprintf("coredns has %d of %d replicas available", dns.Status.AvailableReplicas, dns.Status.Replicas)
	}
	proxy, err := client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, "kube-proxy", metav1.GetOptions{})
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

// Answers waits, at most within, until the cluster answers as a run needs
// it: the API server ready, every node Ready, CoreDNS and kube-proxy
// running. The error says what did not, with the state of each of the
// cluster's node containers where Docker knows it (a node stopped, or
// killed for memory, explains a cluster that stopped answering).
func Answers(ctx context.Context, name string, client kubernetes.Interface, within time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, time.Second, within, true, func(ctx context.Context) (bool, error) {
		if err := apiServerReady(ctx, client); err != nil {
			last = "the API server: " + err.Error()
			return false, nil
		}
		ok, why := clusterReady(ctx, client)
		last = why
		return ok, nil
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("cluster %q did not answer within %s: %s; its node containers: %s", name, within, last, nodeContainers(name))
}

// nodeContainers says each node container's name and state, as Docker
// has it.
func nodeContainers(name string) string {
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+name,
		"--format", "{{.Names}} {{.State}} ({{.Status}})").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unknown (docker ps: %v)", err)
	}
	s := strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")), " ")
	if s == "" {
		return "none"
	}
	return s
}

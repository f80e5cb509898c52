package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/nodrop-dev/nodrop/scenario"
)

// DefaultDrained is how long drain-node keeps its node cordoned unless
// told.
const DefaultDrained = 30 * time.Second

// evictRetry is how often an eviction a PodDisruptionBudget refused is
// asked for again (kubectl drain asks every 5 s; a rollout under load
// moves faster than that).
const evictRetry = time.Second

// evictFor bounds how long the drain waits for a PodDisruptionBudget to
// allow an eviction.
const evictFor = 2 * time.Minute

// DrainNode drains the node of the oldest serving pod of the Deployment
// as `kubectl drain` does: it cordons the node, then evicts every pod on
// it through the eviction API, so PodDisruptionBudgets hold (an eviction
// a budget refuses is asked for again every second, for up to 2 min);
// DaemonSet pods and static pods stay. The node is uncordoned d after the
// drain began. The pods must have somewhere else to go: a cluster of one
// node is refused as bad input.
func DrainNode(d time.Duration, at scenario.FaultAt) scenario.Fault {
	return scenario.Fault{
		Name: fmt.Sprintf("drain of a serving pod's node, uncordoned after %s", d), At: at, For: d, NeedsNodes: true, Mechanism: nodeDrained,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			pod, err := servingPod(ctx, l)
			if err != nil {
				return scenario.Injected{}, err
			}
			return drain(ctx, l.Env.Client, pod.Spec.NodeName)
		},
	}
}

// drain cordons node and evicts its pods; the undo uncordons it.
func drain(ctx context.Context, c kubernetes.Interface, node string) (scenario.Injected, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return scenario.Injected{}, err
	}
	others := 0
	for _, n := range nodes.Items {
		if n.Name != node && !n.Spec.Unschedulable && schedulable(&n) {
			others++
		}
	}
	if others == 0 {
		return scenario.Injected{}, fmt.Errorf("%w: draining node %s leaves its pods no node to go to: drain-node needs a cluster of several nodes (nodrop cluster up --config kind-config-multinode.yaml --name nodrop-multi)", scenario.ErrBadInput, node)
	}
	undo := func(ctx context.Context) error { return cordon(ctx, c, node, false) }
	if err := cordon(ctx, c, node, true); err != nil {
		return scenario.Injected{}, err
	}
	list, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		return scenario.Injected{}, errors.Join(err, undo(context.WithoutCancel(ctx)))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		evicted int
	)
	for _, p := range list.Items {
		if p.Spec.NodeName != node || !evictable(&p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := evict(ctx, c, p.Namespace, p.Name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				evicted++
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return scenario.Injected{}, errors.Join(err, undo(context.WithoutCancel(ctx)))
	}
	pods := "pods"
	if evicted == 1 {
		pods = "pod"
	}
	return scenario.Injected{On: fmt.Sprintf("node %s, %d %s evicted", node, evicted, pods), Undo: undo}, nil
}

// Uncordon uncordons the nodes a drain left cordoned when its run was
// killed outright, and names them; `nodrop cluster up` calls it.
func Uncordon(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var done []string
	for _, n := range nodes.Items {
		if _, ok := n.Annotations[cordonedBy]; !ok {
			continue
		}
		if err := cordon(ctx, c, n.Name, false); err != nil {
			return done, err
		}
		done = append(done, n.Name)
	}
	return done, nil
}

// schedulable: no NoSchedule or NoExecute taint (a kind control plane
// of a multi-node cluster has one).
func schedulable(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	return true
}

// evictable is what kubectl drain evicts: not a DaemonSet's pod, not a
// static (mirror) pod, not one already finished or terminating.
func evictable(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror || p.DeletionTimestamp != nil {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}

// evict asks for the pod's eviction until a PodDisruptionBudget allows
// it (429), for up to evictFor.
func evict(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	deadline := time.Now().Add(evictFor)
	for {
		err := c.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsTooManyRequests(err):
			return fmt.Errorf("evicting pod %s/%s: %w", ns, name, err)
		case time.Now().After(deadline):
			return fmt.Errorf("evicting pod %s/%s: a PodDisruptionBudget refused it for %s: %w", ns, name, evictFor, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(evictRetry):
		}
	}
}

// cordonedBy marks a node nodrop cordoned, so that Uncordon, after a run
// killed mid-drain, uncordons those and no other.
const cordonedBy = "nodrop.dev/cordoned-by-drain"

// cordon marks node unschedulable, and nodrop's (or schedulable again).
func cordon(ctx context.Context, c kubernetes.Interface, node string, on bool) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}},"spec":{"unschedulable":true}}`, cordonedBy)
	if !on {
		patch = fmt.Sprintf(`{"metadata":{"annotations":{%q:null}},"spec":{"unschedulable":false}}`, cordonedBy)
	}
	if _, err := c.CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		verb := "cordoning"
		if !on {
			verb = "uncordoning"
		}
		return fmt.Errorf("%s node %s: %w", verb, node, err)
	}
	return nil
}

package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests run the helpers against client-go's fake clientset: what
// they read and write of the API is checked here, what a cluster does
// with it in the suites.

var fast = Timeouts{Available: time.Second, Serving: time.Second, Rollout: time.Second, Namespace: time.Second, Poll: 10 * time.Millisecond}

func deployment(replicas int32, containers ...string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: replicas, UpdatedReplicas: replicas, ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
	for _, c := range containers {
		d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: c, Image: c + ":1"})
	}
	return d
}

func pod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: labels}}
}

var webLabels = map[string]string{"app": "web"}

func TestCreateNamespaceEnforcesTheLevelAsked(t *testing.T) {
	c := fake.NewClientset()
	// The API server fills generateName in; the fake does not.
	c.PrependReactor("create", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ns := a.(k8stesting.CreateAction).GetObject().(*corev1.Namespace)
		ns.Name = ns.GenerateName + "x1"
		return false, nil, nil
	})
	name, err := CreateNamespace(context.Background(), c, "check", PodSecurityRestricted)
	if err != nil || name != "check-x1" {
		t.Fatalf("CreateNamespace = %q, %v", name, err)
	}
	ns, err := c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" || ns.Labels["app.kubernetes.io/part-of"] != "nodrop" {
		t.Errorf("labels %v", ns.Labels)
	}
	name, _ = CreateNamespace(context.Background(), c, "plain", PodSecurityNone)
	ns, _ = c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if _, ok := ns.Labels["pod-security.kubernetes.io/enforce"]; ok {
		t.Errorf("no level asked, one enforced: %v", ns.Labels)
	}
}

func TestDeleteNamespaceCutsThePodsGraceAfterTheNamespaceIsTerminating(t *testing.T) {
	c := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}})
	var order []string
	c.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		order = append(order, "namespace")
		return false, nil, nil
	})
	c.PrependReactor("delete-collection", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := a.(k8stesting.DeleteCollectionActionImpl).DeleteOptions
		if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != teardownGrace {
			t.Errorf("pods deleted with grace %v, want %d s", opts.GracePeriodSeconds, teardownGrace)
		}
		order = append(order, "pods in "+a.GetNamespace())
		return true, nil, nil
	})
	if err := DeleteNamespace(context.Background(), c, "ns", DefaultTimeouts()); err != nil {
		t.Fatal(err)
	}
	// First the namespace, so that no controller replaces a pod.
	if strings.Join(order, ", ") != "namespace, pods in ns" {
		t.Errorf("order: %v", order)
	}
	if err := DeleteNamespace(context.Background(), c, "gone", DefaultTimeouts()); err != nil {
		t.Errorf("a namespace already gone: %v", err)
	}
}

func TestWaitAvailableWaitsForEveryOldPodToGo(t *testing.T) {
	ctx := context.Background()
	old := pod("web-old", webLabels)
	old.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	c := fake.NewClientset(deployment(1, "app"), pod("web-new", webLabels), old, pod("other", map[string]string{"app": "other"}))
	err := WaitAvailable(ctx, c, "ns", "web", 200*time.Millisecond, fast)
	if err == nil || !strings.Contains(err.Error(), "pod web-old is still terminating") {
		t.Fatalf("a terminating old pod: %v", err)
	}
	if err := c.CoreV1().Pods("ns").Delete(ctx, "web-old", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WaitAvailable(ctx, c, "ns", "web", 200*time.Millisecond, fast); err != nil {
		t.Fatalf("rolled out, old pod gone: %v", err)
	}
}

func TestWaitAvailableSaysAtOnceWhenAPodIsStuck(t *testing.T) {
	d := deployment(1, "app")
	d.Status.AvailableReplicas, d.Status.ReadyReplicas = 0, 0
	p := pod("web-1", webLabels)
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}
	c := fake.NewClientset(d, p)
	start := time.Now()
	err := WaitAvailable(context.Background(), c, "ns", "web", time.Minute, fast)
	if !errors.Is(err, ErrStuck) {
		t.Fatalf("want ErrStuck, got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a stuck pod must end the wait at once, took %s", time.Since(start))
	}
}

func TestDisruptionsChangeWhatTheyName(t *testing.T) {
	ctx := context.Background()
	get := func(c *fake.Clientset) *appsv1.Deployment {
		d, err := c.AppsV1().Deployments("ns").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	c := fake.NewClientset(deployment(2, "app", "sidecar"))
	if err := RolloutRestart.Apply(ctx, c, get(c)); err != nil {
		t.Fatal(err)
	}
	if get(c).Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Error("rollout restart sets the template's restartedAt annotation, as kubectl does")
	}

	change, err := ParseDisruption("image=app:2")
	if err != nil {
		t.Fatal(err)
	}
	if err := change.Apply(ctx, c, get(c)); err != nil {
		t.Fatal(err)
	}
	if cs := get(c).Spec.Template.Spec.Containers; cs[0].Image != "app:2" || cs[1].Image != "sidecar:1" {
		t.Errorf("image change: the first container's image, nothing else: %+v", cs)
	}

	if err := ScaleDown.Apply(ctx, c, get(c)); err != nil {
		t.Fatal(err)
	}
	if r := *get(c).Spec.Replicas; r != 1 {
		t.Errorf("scale down: %d replicas, want 1", r)
	}

	c = fake.NewClientset(deployment(1, "app"), pod("web-1", webLabels), pod("other", map[string]string{"app": "other"}))
	if err := DeletePod.Apply(ctx, c, get(c)); err != nil {
		t.Fatal(err)
	}
	pods, _ := c.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 1 || pods.Items[0].Name != "other" {
		t.Errorf("delete pod: the Deployment's pod, not another: %v", pods.Items)
	}
	if err := DeletePod.Apply(ctx, c, get(c)); err == nil {
		t.Error("delete pod with no pod left must say so")
	}

	for _, bad := range []string{"image=", "drain", ""} {
		if _, err := ParseDisruption(bad); err == nil {
			t.Errorf("ParseDisruption(%q) must fail", bad)
		}
	}
}

func TestServicePortURLPicksTheNamedNodePort(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, NodePort: 30080}, {Name: "rpc", Port: 9000, NodePort: 30900},
		}},
	}
	c := fake.NewClientset(svc)
	ctx := context.Background()
	for port, want := range map[string]string{"": "http://10.0.0.1:30080/", "rpc": "http://10.0.0.1:30900/"} {
		got, err := ServicePortURL(ctx, c, "ns", "web", port, "10.0.0.1")
		if err != nil || got != want {
			t.Errorf("port %q: %q, %v; want %q", port, got, err, want)
		}
	}
	if _, err := ServicePortURL(ctx, c, "ns", "web", "metrics", "10.0.0.1"); err == nil {
		t.Error("a port the Service does not have must be an error")
	}
	if _, err := ServiceURL(ctx, c, "ns", "missing", "10.0.0.1"); err == nil {
		t.Error("a Service that does not exist must be an error")
	}
}

// A RoleBinding's service account moves with it into the run's
// namespace; one that lives elsewhere stays where it is.
func TestMoveSubjects(t *testing.T) {
	rb := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
		"metadata": map[string]any{"name": "lb", "namespace": "shop"},
		"subjects": []any{
			map[string]any{"kind": "ServiceAccount", "name": "lb", "namespace": "shop"},
			map[string]any{"kind": "ServiceAccount", "name": "lb2"},
			map[string]any{"kind": "ServiceAccount", "name": "mon", "namespace": "monitoring"},
			map[string]any{"kind": "User", "name": "jane"},
		},
	}}
	moveSubjects(rb, "nodrop-check-x1")
	subjects, _, _ := unstructured.NestedSlice(rb.Object, "subjects")
	want := []string{"nodrop-check-x1", "nodrop-check-x1", "monitoring", ""}
	for i, s := range subjects {
		if got, _ := s.(map[string]any)["namespace"].(string); got != want[i] {
			t.Errorf("subject %d: namespace %q, want %q", i, got, want[i])
		}
	}
}

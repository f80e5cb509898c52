package kruise

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/manifest"
)

// Manifests renders the module's config/default with nodrop's overlay.
func Manifests(b *Built) ([]*unstructured.Unstructured, error) {
	dir := filepath.Join(b.Source, "nodrop-overlay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(overlay(b.Image)), 0o644); err != nil {
		return nil, err
	}
	// kustomize warns about the upstream tree's deprecated fields (bases,
	// patchesStrategicMerge); they are upstream's to fix. The warnings are
	// left alone: silencing them would mean changing the process's logger.
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("rendering OpenKruise's config/default: %w", err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	objs, err := manifest.Decode(out)
	if err != nil {
		return nil, fmt.Errorf("rendered OpenKruise manifest: %w", err)
	}
	return objs, nil
}

// Install applies the manifests server-side (the CRDs are too large for
// a client-side apply's annotation) unless the manager already runs this
// image, then waits until the manager is available and has filled in its
// webhooks' CA bundle.
func Install(ctx context.Context, rc *rest.Config, b *Built, log *progress.Logger) error {
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	if d, err := c.AppsV1().Deployments(Namespace).Get(ctx, Deployment, metav1.GetOptions{}); err == nil && runs(d, b.Image) {
		if err := waitReady(ctx, c, dyn); err == nil {
			log.Printf("✓ OpenKruise %s: already installed (%s)", Version, b.Image)
			return nil
		}
	}
	step := log.Start("installing OpenKruise %s (kruise-manager %s)", Version, b.Image)
	objs, err := Manifests(b)
	if err != nil {
		return step.Fail(err)
	}
	creator, err := kube.NewCreator(rc)
	if err != nil {
		return step.Fail(err)
	}
	// Namespaces and CRDs first, so everything else has a place to go.
	first := func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition"
	}
	ordered := slices.Concat(
		slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return !first(o) }),
		slices.DeleteFunc(slices.Clone(objs), first))
	if err := creator.Apply(ctx, ordered); err != nil {
		return step.Fail(err)
	}
	if err := waitReady(ctx, c, dyn); err != nil {
		return step.Fail(err)
	}
	step.Done(fmt.Sprintf("%d objects", len(objs)))
	return nil
}

func runs(d *appsv1.Deployment, image string) bool {
	cs := d.Spec.Template.Spec.Containers
	return len(cs) > 0 && cs[0].Image == image
}

// waitReady waits for the manager's Deployment to be available, its
// mutating webhooks to carry a CA bundle (before that, pods are created
// without their sidecars: the pod webhook's failurePolicy is Ignore), and
// its SidecarSet webhook to answer. After the node restarted, the
// Deployment's status and the webhook Service's endpoints can still say
// ready while the manager's new pod is not up: only an answer tells.
func waitReady(ctx context.Context, c kubernetes.Interface, dyn dynamic.Interface) error {
	last := "not checked yet"
	err := wait.PollUntilContextTimeout(ctx, waitPoll, readyTimeout, true, func(ctx context.Context) (bool, error) {
		d, err := c.AppsV1().Deployments(Namespace).Get(ctx, Deployment, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if d.Status.AvailableReplicas < 1 || d.Status.UpdatedReplicas != d.Status.Replicas {
			last = fmt.Sprintf("manager: %d available, %d of %d updated", d.Status.AvailableReplicas, d.Status.UpdatedReplicas, d.Status.Replicas)
			return false, nil
		}
		wh, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, MutatingWebhook, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, w := range wh.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				last = "webhook " + w.Name + " has no CA bundle yet"
				return false, nil
			}
		}
		if err := webhookAnswers(ctx, dyn); err != nil {
			last = "the SidecarSet webhook does not answer yet: " + err.Error()
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for kruise-manager: %s: %w", last, err)
	}
	return nil
}

// SidecarSets is the API resource of Kruise's SidecarSets.
var SidecarSets = schema.GroupVersionResource{Group: "apps.kruise.io", Version: "v1alpha1", Resource: "sidecarsets"}

// webhookAnswers has the SidecarSet webhook (failurePolicy Fail) admit a
// SidecarSet in a dry run: nothing is stored.
func webhookAnswers(ctx context.Context, dyn dynamic.Interface) error {
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps.kruise.io/v1alpha1",
		"kind":       "SidecarSet",
		"metadata":   map[string]any{"name": "nodrop-webhook-probe"},
		"spec": map[string]any{
			"selector":   map[string]any{"matchLabels": map[string]any{"nodrop.dev/webhook-probe": "true"}},
			"containers": []any{map[string]any{"name": "probe", "image": "nodrop/none:probe"}},
		},
	}}
	_, err := dyn.Resource(SidecarSets).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

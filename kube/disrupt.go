package kube

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Disruption is what a spec does to a running Deployment.
type Disruption struct {
	Name  string
	Apply func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error
}

// RolloutRestart does what `kubectl rollout restart` does.
var RolloutRestart = Disruption{Name: "rollout restart", Apply: func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error {
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	_, err := c.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("restarting deployment %s: %w", d.Name, err)
	}
	return nil
}}

// ImageChange sets the image of the Deployment's first container.
func ImageChange(image string) Disruption {
	return Disruption{Name: "image change", Apply: func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error {
		if len(d.Spec.Template.Spec.Containers) == 0 {
			return fmt.Errorf("deployment %s has no container", d.Name)
		}
		name := d.Spec.Template.Spec.Containers[0].Name
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":%q,"image":%q}]}}}}`, name, image)
		_, err := c.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		if err != nil {
			return fmt.Errorf("changing the image of %s: %w", d.Name, err)
		}
		return nil
	}}
}

// ScaleDown removes one replica.
var ScaleDown = Disruption{Name: "scale down", Apply: func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error {
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, *d.Spec.Replicas-1)
	_, err := c.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("scaling %s down: %w", d.Name, err)
	}
	return nil
}}

// DeletePod deletes one pod of the Deployment; it replaces it.
var DeletePod = Disruption{Name: "delete pod", Apply: func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error {
	pods, err := PodsOf(ctx, c, d)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		return fmt.Errorf("deployment %s has no pod to delete", d.Name)
	}
	if err := c.CoreV1().Pods(d.Namespace).Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting pod %s: %w", pods[0].Name, err)
	}
	return nil
}}

// Nothing leaves the Deployment alone: a null run, or one whose only
// disruption is a fault (a node drained).
var Nothing = Disruption{Name: "nothing", Apply: func(context.Context, kubernetes.Interface, *appsv1.Deployment) error { return nil }}

// DisruptionNames are the disruptions ParseDisruption knows.
const DisruptionNames = "restart, image=REF, scale-down, delete-pod, none"

// ParseDisruption reads a disruption as the CLI and the suites name it:
// restart, image=REF, scale-down, delete-pod or none.
func ParseDisruption(s string) (Disruption, error) {
	switch {
	case s == "none":
		return Nothing, nil
	case s == "restart":
		return RolloutRestart, nil
	case strings.HasPrefix(s, "image="):
		ref := strings.TrimPrefix(s, "image=")
		if ref == "" {
			return Disruption{}, fmt.Errorf("disruption image= needs an image reference")
		}
		return ImageChange(ref), nil
	case s == "scale-down":
		return ScaleDown, nil
	case s == "delete-pod":
		return DeletePod, nil
	}
	return Disruption{}, fmt.Errorf("unknown disruption %q (known: %s)", s, DisruptionNames)
}

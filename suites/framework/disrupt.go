package framework

import (
	"context"
	"fmt"
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

// ImageChange sets the app container's image.
func ImageChange(image string) Disruption {
	return Disruption{Name: "image change", Apply: func(ctx context.Context, c kubernetes.Interface, d *appsv1.Deployment) error {
		patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":%q}]}}}}`, image)
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

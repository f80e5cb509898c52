package kube

import (
	"context"
	"fmt"
	"io"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Dump writes a namespace's pods, events and container logs, for a failed
// spec, before the namespace is deleted.
func Dump(ctx context.Context, c kubernetes.Interface, ns string, w io.Writer) {
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(w, "listing pods of %s: %v\n", ns, err)
		return
	}
	fmt.Fprintf(w, "=== pods in %s\n", ns)
	for _, p := range pods.Items {
		fmt.Fprintf(w, "%s phase=%s node=%s ip=%s deleting=%v\n", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.PodIP, p.DeletionTimestamp != nil)
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(w, "  container %s ready=%v restarts=%d state=%+v\n", s.Name, s.Ready, s.RestartCount, s.State)
		}
	}
	events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		sort.Slice(events.Items, func(i, j int) bool { return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp) })
		fmt.Fprintf(w, "=== events in %s\n", ns)
		for _, e := range events.Items {
			fmt.Fprintf(w, "%s %s/%s %s: %s\n", e.LastTimestamp.Format("15:04:05"), e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	for _, p := range pods.Items {
		for _, s := range p.Spec.Containers {
			raw, err := c.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: s.Name}).DoRaw(ctx)
			fmt.Fprintf(w, "=== logs of %s/%s\n%s", p.Name, s.Name, raw)
			if err != nil {
				fmt.Fprintf(w, "(error: %v)\n", err)
			}
		}
	}
}

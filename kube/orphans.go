package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// OwnerAnnotation names the process that made a namespace and deletes it
// when its run ends: "host/pid". A run that is killed (SIGKILL, a CI
// job cut off, a laptop closed) cannot delete its namespace; its pods
// keep running and take CPU from every later run on the same cluster.
// The mark lets a later `nodrop cluster up` tell such a namespace from
// one a live run is using, or one kept on purpose (--keep removes it).
const OwnerAnnotation = "nodrop.dev/owner"

// partOf is the label every namespace nodrop makes carries.
const partOf = "app.kubernetes.io/part-of=nodrop"

// thisProcess is the owner value of the calling process.
func thisProcess() string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(os.Getpid())
}

// Disown removes the owner mark from a namespace: it is kept on purpose
// and no later run treats it as left behind.
func Disown(ctx context.Context, c kubernetes.Interface, name string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, OwnerAnnotation)
	if _, err := c.CoreV1().Namespaces().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("keeping namespace %s: %w", name, err)
	}
	return nil
}

// Orphans are the namespaces nodrop made whose owner was a process on
// this host that no longer runs. A namespace without the mark (kept with
// --keep, or made by another host or an older nodrop) is never one.
func Orphans(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	list, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: partOf})
	if err != nil {
		return nil, fmt.Errorf("listing nodrop's namespaces: %w", err)
	}
	host, _ := os.Hostname()
	var out []string
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil {
			continue
		}
		h, p, ok := strings.Cut(ns.Annotations[OwnerAnnotation], "/")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || h != host || pid <= 0 || running(pid) {
			continue
		}
		out = append(out, ns.Name)
	}
	return out, nil
}

// running reports whether a process with this pid exists on this host.
func running(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// DeleteOrphans deletes the namespaces Orphans finds and waits until they
// are gone; it returns their names.
func DeleteOrphans(ctx context.Context, c kubernetes.Interface, t Timeouts) ([]string, error) {
	names, err := Orphans(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := DeleteNamespace(ctx, c, name, t); err != nil {
			return names, err
		}
	}
	return names, nil
}

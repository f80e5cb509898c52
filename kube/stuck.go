package kube

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// ErrStuck marks a pod that cannot become ready without a change from
// its owner: its image is not on the node, its container keeps crashing,
// its configuration names something missing. Waiting longer would not
// help, so waits stop at once with it.
var ErrStuck = errors.New("pod cannot start")

// stuckReasons are the waiting reasons the kubelet gives a container that
// will not start as it stands.
var stuckReasons = map[string]string{
	"ErrImageNeverPull":          "the image is not on the node and imagePullPolicy is Never: load it first (nodrop images load REF)",
	"ErrImagePull":               "the image cannot be pulled: load it into the nodes first (nodrop images load REF) and set imagePullPolicy: IfNotPresent or Never",
	"ImagePullBackOff":           "the image cannot be pulled: load it into the nodes first (nodrop images load REF) and set imagePullPolicy: IfNotPresent or Never",
	"InvalidImageName":           "the image reference is not valid",
	"CreateContainerConfigError": "the container's configuration names something missing (a ConfigMap, Secret or key)",
	"CreateContainerError":       "the runtime could not create the container",
	"RunContainerError":          "the runtime could not start the container",
	"CrashLoopBackOff":           "the container keeps exiting",
}

// StuckError says which pod cannot start, and why.
type StuckError struct {
	Pod, Container, Reason, Message, Hint string
}

func (e *StuckError) Error() string {
	s := fmt.Sprintf("pod %s, container %s: %s", e.Pod, e.Container, e.Reason)
	if e.Message != "" {
		s += " (" + e.Message + ")"
	}
	return s + ": " + e.Hint
}

func (e *StuckError) Is(target error) bool { return target == ErrStuck }

// Stuck returns the first pod among pods that cannot start as it stands,
// or nil.
func Stuck(pods []corev1.Pod) error {
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, s := range statuses {
			w := s.State.Waiting
			if w == nil {
				continue
			}
			if hint, ok := stuckReasons[w.Reason]; ok {
				return &StuckError{Pod: p.Name, Container: s.Name, Reason: w.Reason, Message: w.Message, Hint: hint}
			}
		}
	}
	return nil
}

package kube

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func waiting(pod, reason, msg string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "web", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		}}},
	}
}

func TestStuckNamesThePodAndWhatToDo(t *testing.T) {
	if err := Stuck([]corev1.Pod{waiting("a", "ContainerCreating", "")}); err != nil {
		t.Fatalf("a container being created is not stuck: %v", err)
	}
	err := Stuck([]corev1.Pod{waiting("a", "ContainerCreating", ""), waiting("b", "ErrImageNeverPull", `image "shop:2" is not present`)})
	if !errors.Is(err, ErrStuck) {
		t.Fatalf("ErrImageNeverPull: %v", err)
	}
	for _, want := range []string{"pod b", "container web", "ErrImageNeverPull", `image "shop:2" is not present`, "nodrop images load"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	deleting := waiting("c", "CrashLoopBackOff", "")
	deleting.DeletionTimestamp = &metav1.Time{}
	if err := Stuck([]corev1.Pod{deleting}); err != nil {
		t.Fatalf("a pod on its way out is not waited for: %v", err)
	}
}

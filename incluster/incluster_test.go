package incluster

import (
	"errors"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nodrop-dev/nodrop/internal/generator"
	"github.com/nodrop-dev/nodrop/scenario"
)

// The Job runs n generator pods once each, attachable, spread across
// nodes, under the restricted Pod Security Standard; given nodes, only
// there.
func TestJobRunsGeneratorsOnceEachSpread(t *testing.T) {
	g := Generators{Image: "nodrop/generator:abc", Pods: 3}
	j := g.job(3)
	s := j.Spec
	if *s.Parallelism != 3 || *s.Completions != 3 || *s.BackoffLimit != 0 || s.ActiveDeadlineSeconds == nil {
		t.Errorf("job spec %+v: want 3 pods at once, none retried, a deadline", s)
	}
	p := s.Template.Spec
	c := p.Containers[0]
	if p.RestartPolicy != corev1.RestartPolicyNever || !c.Stdin || !c.StdinOnce || c.Image != g.Image || c.Args[0] != generator.HelperArg {
		t.Errorf("container %+v: want the generator, attachable once, never restarted", c)
	}
	if sc := c.SecurityContext; sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || sc.SeccompProfile == nil {
		t.Errorf("security context %+v: want the restricted standard's", sc)
	}
	if cpu := c.Resources.Requests[corev1.ResourceCPU]; cpu.Cmp(DefaultCPU) != 0 {
		t.Errorf("requests %v CPU, want %v: a BestEffort pod's load stands still on a busy node", cpu.String(), DefaultCPU.String())
	}
	if ts := p.TopologySpreadConstraints; len(ts) != 1 || ts[0].TopologyKey != corev1.LabelHostname || ts[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
		t.Errorf("spread %+v: want across hosts, as the scheduler can", ts)
	}
	if p.Affinity != nil || len(p.Tolerations) > 0 {
		t.Errorf("no nodes given, yet affinity %+v, tolerations %+v", p.Affinity, p.Tolerations)
	}
	g.Nodes = []string{"w1", "w2"}
	p = g.job(3).Spec.Template.Spec
	terms := p.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || strings.Join(terms[0].MatchExpressions[0].Values, ",") != "w1,w2" || p.TopologySpreadConstraints[0].WhenUnsatisfiable != corev1.DoNotSchedule {
		t.Errorf("nodes w1, w2: affinity %+v, spread %+v", terms, p.TopologySpreadConstraints)
	}
	if !strings.Contains(g.Where(), "3 generator pods") || !strings.Contains(g.Where(), "w1, w2") {
		t.Errorf("Where() = %q", g.Where())
	}
	if j.Labels[batchv1.JobNameLabel] != "" {
		t.Error("the Job names itself by a label the Job controller sets")
	}
}

// A pod that cannot run says why; one still on its way says nothing.
func TestCannotRunSaysWhy(t *testing.T) {
	waiting := func(reason string) corev1.Pod {
		return corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Image: "nodrop/generator:abc", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "the message"}},
		}}}}
	}
	for reason, want := range map[string]string{
		"ErrImagePull":      "ErrImagePull: the message (image nodrop/generator:abc)",
		"ImagePullBackOff":  "ImagePullBackOff",
		"ContainerCreating": "",
	} {
		if got := cannotRun(waiting(reason)); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", reason, got, want)
		}
	}
	failed := corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Message: "evicted"}}
	if got := cannotRun(failed); !strings.Contains(got, "failed before its load (evicted)") {
		t.Errorf("failed pod: %q", got)
	}
	err := cannotStartf("pod %s: %s", "p", "x")
	if !errors.Is(err, ErrCannotStart) || !errors.Is(err, scenario.ErrBadInput) {
		t.Errorf("%v: want ErrCannotStart and scenario.ErrBadInput", err)
	}
}

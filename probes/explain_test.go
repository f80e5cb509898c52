package probes

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodrop-dev/nodrop/loadgen"
)

func TestExplainLaysLossesNextToEvents(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &loadgen.Report{Started: t0, Losses: []loadgen.Loss{
		{At: at(10100), Class: loadgen.Reset},
		{At: at(10102), Class: loadgen.Reset},
		{At: at(10110), Class: loadgen.EOF},
		{At: at(20000), Class: loadgen.Refused},
	}}
	events := []Event{
		{At: at(100), Kind: PodDeleting, Pod: "web-1"},
		{At: at(10050), Kind: App, Pod: "web-2", Detail: "ready"},
		{At: at(10900), Kind: ContainerTerminated, Pod: "web-1", Detail: "app exited 137 = SIGKILL (Error)"},
		// Evidence about the lone refusal, at its time: listed with it,
		// never its cause.
		{At: at(20000), Kind: Conntrack, Detail: "sent to 10.244.0.37"},
	}
	bursts := Bursts(r, events)
	if len(bursts) != 2 || bursts[0].Lost != 3 || bursts[0].ByClass[loadgen.Reset] != 2 || bursts[1].Lost != 1 {
		t.Fatalf("bursts: %+v", bursts)
	}
	if bursts[0].Cause == nil || bursts[0].Cause.Detail != "ready" {
		t.Errorf("cause of first burst: %v", bursts[0].Cause)
	}
	if bursts[1].Cause != nil || len(bursts[1].During) != 1 || bursts[1].During[0].Kind != Conntrack {
		t.Errorf("conntrack evidence of the second burst: cause %v, during %v", bursts[1].Cause, bursts[1].During)
	}
	text := Explain(r, events)
	for _, want := range []string{"2 reset, 1 eof at +10.100s", "0.050s after app web-2: ready", "+10.900s container terminated web-1: app exited 137 = SIGKILL", "1 refused at +20.000s", "no cluster event in the 5 s before", "+20.000s conntrack: sent to 10.244.0.37"} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
	if !StartsAfter(bursts[0], events, PodDeleting, "", 10*time.Second, 2*time.Second) || StartsAfter(bursts[1], events, PodDeleting, "", 10*time.Second, 2*time.Second) {
		t.Errorf("only the first burst is 10 s after a deletion: %+v", bursts)
	}
	if !StartsAfter(bursts[0], events, App, "ready", 50*time.Millisecond, 10*time.Millisecond) || StartsAfter(bursts[0], events, App, "sigterm", 0, time.Second) {
		t.Errorf("the first burst comes 50 ms after the app's ready line, and after no sigterm line: %+v", bursts[0])
	}
	if e := Episodes(bursts, 5*time.Second); len(e) != 2 {
		t.Errorf("bursts 10 s apart are two episodes: %+v", e)
	}
	if e := Episodes(bursts, 20*time.Second); len(e) != 1 || e[0].Lost != 4 || e[0].ByClass[loadgen.Reset] != 2 || bursts[0].Lost != 3 {
		t.Errorf("bursts 10 s apart merged with a 20 s gap: %+v (bursts %+v)", e, bursts)
	}
}

// Losses merged from several generators say which sent how many.
func TestExplainNamesTheGeneratorsOfABurst(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &loadgen.Report{Started: t0, Losses: []loadgen.Loss{
		{At: at(1000), Class: loadgen.Refused, Generator: "load-b on worker2"},
		{At: at(1001), Class: loadgen.Refused, Generator: "load-a on worker"},
		{At: at(1002), Class: loadgen.Refused, Generator: "load-b on worker2"},
	}}
	text := Explain(r, nil)
	if want := "sent by load-a on worker (1), load-b on worker2 (2)"; !strings.Contains(text, want) {
		t.Errorf("explanation lacks %q:\n%s", want, text)
	}
	if e := Episodes(Bursts(r, nil), time.Second); len(e) != 1 || e[0].ByGenerator["load-b on worker2"] != 2 {
		t.Errorf("episodes: %+v", e)
	}
}

// Losses on reused connections say which pod the connections reached,
// and its node when the timeline has it.
func TestExplainNamesThePodsTheConnectionsReached(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := &loadgen.Report{Started: t0, Losses: []loadgen.Loss{
		{At: at(1000), Class: loadgen.EOF, ConnPod: "web-a"},
		{At: at(1001), Class: loadgen.Reset, ConnPod: "web-a"},
		{At: at(1002), Class: loadgen.Refused},
		{At: at(3000), Class: loadgen.EOF, ConnPod: "web-b"},
	}}
	events := []Event{{At: at(0), Kind: PodScheduled, Pod: "web-a", Detail: "worker"}}
	text := Explain(r, events)
	for _, want := range []string{"; on connections to web-a on worker (2)\n", "; on connections to web-b (1)\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
	if e := Episodes(Bursts(r, events), 5*time.Second); len(e) != 1 || e[0].ByConnPod["web-a"] != 2 || e[0].ByConnPod["web-b"] != 1 {
		t.Errorf("episodes: %+v", e)
	}
}

func TestParseAppLine(t *testing.T) {
	e, ok := parseAppLine("web-1", []byte(`{"ts":"2026-11-23T12:00:01.5Z","event":"sigterm","signal":"terminated","pid":1}`))
	if !ok || e.Kind != App || e.Pod != "web-1" || !strings.HasPrefix(e.Detail, "sigterm (signal=terminated") || e.At.Nanosecond() != 5e8 {
		t.Errorf("parsed %+v, %v", e, ok)
	}
	if _, ok := parseAppLine("web-1", []byte("start.sh: starting app")); ok {
		t.Error("a plain log line is not an app event")
	}
}

// A native sidecar's status is among the init containers' and counts as
// one of the pod's containers, before the app; a plain init container
// does not.
func TestContainerStatusesIncludeNativeSidecars(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := &corev1.Pod{
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "setup"}, {Name: "proxy", RestartPolicy: &always}},
			Containers:     []corev1.Container{{Name: "app"}},
		},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "setup"}, {Name: "proxy"}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: "app"}},
		},
	}
	var names []string
	for _, st := range containerStatuses(p) {
		names = append(names, st.Name)
	}
	if strings.Join(names, ",") != "proxy,app" {
		t.Errorf("containers %v, want proxy,app", names)
	}
}

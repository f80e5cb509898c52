package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// podLife is what the timeline says of one pod's containers: which were
// seen, when each got SIGTERM (its lifecycle line) and when each exited,
// and when each began to serve. Only a pod of several containers names
// them in its lifecycle lines ("proxy: sigterm …").
type podLife struct {
	names   []string
	sigterm map[string]time.Time
	exited  map[string]time.Time
	serving map[string]time.Time
}

// lifeOf is pod's podLife from the timeline.
func lifeOf(events []probes.Event, pod string) podLife {
	l := podLife{sigterm: map[string]time.Time{}, exited: map[string]time.Time{}, serving: map[string]time.Time{}}
	first := func(m map[string]time.Time, c string, at time.Time) {
		if _, ok := m[c]; !ok {
			m[c] = at
		}
	}
	for _, e := range events {
		if e.Pod != pod {
			continue
		}
		name, _, _ := strings.Cut(e.Detail, " ")
		switch e.Kind {
		case probes.ContainerStarted:
			if !slices.Contains(l.names, name) {
				l.names = append(l.names, name)
			}
		case probes.ContainerTerminated:
			first(l.exited, name, e.At)
		case probes.App:
			c, line, ok := strings.Cut(e.Detail, ": ")
			switch {
			case !ok:
			case strings.HasPrefix(line, "sigterm"):
				first(l.sigterm, c, e.At)
			case strings.HasPrefix(line, "exit"):
				// The container's own word, before the kubelet reports it.
				first(l.exited, c, e.At)
			case strings.HasPrefix(line, "serving"), strings.HasPrefix(line, "ready"):
				first(l.serving, c, e.At)
			}
		}
	}
	return l
}

// podsStoppedOutOfOrder explains an episode by the order in which the
// containers of a pod deleted before it stopped (containerStop), trying
// the deleted pods newest first: in a rollout an old pod goes as a new
// one turns ready, so this comes before blaming the new pod's readiness.
func podsStoppedOutOfOrder(ep probes.Burst, events []probes.Event) (string, bool) {
	var deleted []*probes.Event
	for i := range events {
		if e := &events[i]; e.Kind == probes.PodDeleting && !e.At.After(ep.Start.Add(watchLag)) {
			deleted = append(deleted, e)
		}
	}
	slices.SortStableFunc(deleted, func(a, b *probes.Event) int { return b.At.Compare(a.At) })
	for _, e := range deleted {
		if note := containerStop(ep, e, events); note != "" {
			return fmt.Sprintf(", %.1fs after pod %s was deleted", max(ep.Start.Sub(e.At), 0).Seconds(), e.Pod) + note, true
		}
	}
	return "", false
}

// containerStop explains losses after the deletion of a pod of several
// containers (an app and a proxy in front of it in the pod) by the order
// its containers stopped in; "" when the pod had one container or the
// order explains nothing.
func containerStop(ep probes.Burst, deleted *probes.Event, events []probes.Event) string {
	l := lifeOf(events, deleted.Pod)
	if len(l.names) < 2 {
		return ""
	}
	since := func(t time.Time) float64 { return t.Sub(deleted.At).Seconds() }
	// A container that exited before the losses while another still ran
	// and answered 5xx: the one in front outlived the app it forwards to.
	// (The app's losses begin as it closes its listener, a moment before
	// its exit line: hence watchLag.)
	if ep.ByClass[loadgen.HTTP5xx] > 0 {
		for _, gone := range l.names {
			at, ok := l.exited[gone]
			if !ok || at.After(ep.Start.Add(watchLag)) {
				continue
			}
			for _, front := range l.names {
				if end, ok := l.exited[front]; front != gone && (!ok || end.After(ep.Start.Add(watchLag))) {
					return fmt.Sprintf(" = container %s exited %.1fs after the deletion while container %s still ran and answered for it (5xx) to clients that kept their connections to it: a proxy in front of the app must move its clients before the app stops. Let it pass the app's Connection: close on to its clients, or drain it (a preStop sleep shorter than the app's) while the app still serves.", gone, since(at), front)
				}
			}
		}
	}
	// Containers that got SIGTERM at the deletion, while kube-proxy still
	// sent the pod new connections, and those a preStop held: losses
	// soon after the deletion.
	if ep.Start.Sub(deleted.At) > DataPlaneLag+DefaultTolerance {
		return ""
	}
	var early, held []string
	for _, c := range l.names {
		if at, ok := l.sigterm[c]; ok && at.Sub(deleted.At) < watchLag && !at.After(ep.End) {
			early = append(early, c)
		} else {
			held = append(held, c)
		}
	}
	switch {
	case len(early) == 0:
		return ""
	case len(held) == 0:
		return fmt.Sprintf(" = containers %s all got SIGTERM at the deletion, none held by a preStop, while kube-proxy still sent the pod new connections. Give each a preStop sleep, the one in front of the app (the one the Service sends to) shorter than the app's, so it drains its clients while the app still serves; or run that one as a native sidecar (initContainers, restartPolicy: Always), which the kubelet stops only after the app.", andList(early))
	}
	return fmt.Sprintf(" = container %s got SIGTERM at the deletion and stopped forwarding while kube-proxy still sent the pod new connections; %s, held by its preStop, still served: the container the Service sends to stopped first. Give %s a preStop sleep too, shorter than the app's, so it drains its clients while the app still serves; or run it as a native sidecar (initContainers, restartPolicy: Always), which the kubelet stops only after the app.", andList(early), andList(held), andList(early))
}

// containerStart explains losses at a new pod of several containers that
// turned ready before one of them served: a proxy in front of the app
// outside the pod's readiness. "" when the timeline does not show it.
func containerStart(ep probes.Burst, ready *probes.Event, events []probes.Event) string {
	l := lifeOf(events, ready.Pod)
	if len(l.names) < 2 {
		return ""
	}
	for _, c := range l.names {
		if at, ok := l.serving[c]; ok && at.After(ready.At) && !at.Before(ep.Start) {
			return fmt.Sprintf(", %.1fs after pod %s's endpoint turned ready = the pod turned ready while its container %s did not serve yet (it began %.1fs after): the pod's readiness does not check the container in front of the app. Give %s a readiness probe on its own port, or run it as a native sidecar with a startup probe, which the kubelet waits for before it starts the app.",
				ep.Start.Sub(ready.At).Seconds(), ready.Pod, c, at.Sub(ready.At).Seconds(), c)
		}
	}
	return ""
}

// andList joins names as "a", "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

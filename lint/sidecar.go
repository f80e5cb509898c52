package lint

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// A container's role in its pod decides which rules apply to it.
type role int

const (
	// roleApp serves its own requests.
	roleApp role = iota
	// roleSidecar stands in front of the app in the same pod (the
	// Service sends to it, it forwards to the app), started and stopped
	// with the app.
	roleSidecar
	// roleNativeSidecar is such a proxy run as a native sidecar: an init
	// container with restartPolicy Always, started before the app and
	// stopped after it.
	roleNativeSidecar
)

// servingContainers are a pod's containers that serve ports, each with
// its role: a native sidecar, or a container a Service sends to while
// another serving container of the pod is sent nothing (the app behind
// it), is a sidecar in front of the app, unless it is the pod's first
// container, where apps stand.
func servingContainers(spec corev1.PodSpec, svcs []*corev1.Service) ([]corev1.Container, []role) {
	var cs []corev1.Container
	var native []bool
	for _, c := range spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways && len(c.Ports) > 0 {
			cs, native = append(cs, c), append(native, true)
		}
	}
	for i, c := range spec.Containers {
		if len(c.Ports) > 0 || i == 0 {
			cs, native = append(cs, c), append(native, false)
		}
	}
	targeted := make([]bool, len(cs))
	behind := false // some serving container is sent nothing by a Service
	for i, c := range cs {
		targeted[i] = sentTo(c, svcs)
		behind = behind || !targeted[i]
	}
	roles := make([]role, len(cs))
	for i, c := range cs {
		switch {
		case len(cs) < 2 || !targeted[i] || !behind:
		case native[i]:
			roles[i] = roleNativeSidecar
		case len(spec.Containers) > 0 && c.Name != spec.Containers[0].Name:
			roles[i] = roleSidecar
		}
	}
	return cs, roles
}

// sentTo reports whether a Service port sends to one of c's ports.
func sentTo(c corev1.Container, svcs []*corev1.Service) bool {
	for _, s := range svcs {
		for _, sp := range s.Spec.Ports {
			for _, p := range c.Ports {
				if targets(sp, p) {
					return true
				}
			}
		}
	}
	return false
}

// sidecarFindings are what a sidecar in front of the app costs: a pod
// that turns ready before the sidecar forwards, and a classic sidecar
// stopped with the app.
func sidecarFindings(c corev1.Container, r role, spec corev1.PodSpec, where string, add func(k Kind, rule, object, msg, fix, variant string)) {
	if c.ReadinessProbe == nil && (r == roleSidecar || c.StartupProbe == nil) {
		add(Loss, "sidecar-not-in-readiness", where,
			fmt.Sprintf("container %s receives the Service's traffic and forwards it to the app, but nothing checks that it listens: the pod turns ready on the app's probe alone, and connections that reach a new pod before its %s listens are refused", c.Name, c.Name),
			"give it a readiness probe on its own port, or run it as a native sidecar (initContainers, restartPolicy: Always) with a startup probe, which the kubelet waits for before it starts the app", "sidecar-slow-start")
	}
	if r != roleSidecar || (c.Lifecycle != nil && c.Lifecycle.PreStop != nil) {
		return
	}
	variant := "sidecar-no-prestop"
	for _, app := range spec.Containers {
		if app.Name != c.Name && app.Lifecycle != nil && app.Lifecycle.PreStop != nil {
			variant = "sidecar-prestop-app-only"
		}
	}
	add(Loss, "sidecar-stops-with-app", where,
		fmt.Sprintf("container %s receives the Service's traffic and forwards it to the app, with no preStop hook: at deletion it gets SIGTERM at once, with the app, and stops forwarding while kube-proxy still sends the pod new connections; the app's own preStop does not hold it", c.Name),
		"give it a preStop sleep shorter than the app's (e.g. 5 s against the app's 8 s), so it drains its clients while the app still serves; or run it as a native sidecar (initContainers, restartPolicy: Always), which the kubelet stops only after the app, and let it pass the app's Connection: close on to its clients", variant)
}

package lint

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// services are the Services whose selector picks a Deployment's pods.
func services(d *appsv1.Deployment, all []*corev1.Service) []*corev1.Service {
	var out []*corev1.Service
	for _, s := range all {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, s)
		}
	}
	return out
}

// grpcPort is the container's port that speaks gRPC: a port named so
// (grpc, grpc-…, …-grpc, h2c), one a Service declares gRPC or HTTP/2
// cleartext (appProtocol grpc, h2c, kubernetes.io/h2c), or the port of a
// native gRPC probe.
func grpcPort(c corev1.Container, svcs []*corev1.Service) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		n := strings.ToLower(p.Name)
		if n == "grpc" || n == "h2c" || strings.HasPrefix(n, "grpc-") || strings.HasSuffix(n, "-grpc") {
			return p, true
		}
		for _, s := range svcs {
			for _, sp := range s.Spec.Ports {
				if isGRPCProtocol(sp.AppProtocol) && targets(sp, p) {
					return p, true
				}
			}
		}
	}
	for _, pr := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if pr != nil && pr.GRPC != nil {
			for _, p := range c.Ports {
				if p.ContainerPort == pr.GRPC.Port {
					return p, true
				}
			}
			return corev1.ContainerPort{ContainerPort: pr.GRPC.Port}, true
		}
	}
	return corev1.ContainerPort{}, false
}

func isGRPCProtocol(p *string) bool {
	return p != nil && slices.Contains(loadgen.AppProtocols("grpc"), strings.ToLower(*p))
}

// targets reports whether a Service port sends to a container port.
func targets(sp corev1.ServicePort, p corev1.ContainerPort) bool {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		return sp.TargetPort.StrVal == p.Name
	case sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal == p.ContainerPort
	}
	return sp.Port == p.ContainerPort
}

// grpcReadiness is the finding for a gRPC server without a native gRPC
// readiness probe (none, or a TCP one), in gRPC's terms.
func grpcReadiness(port int32, tcp bool) (rule, msg, fix, variant string) {
	fix = fmt.Sprintf("add the native gRPC readiness probe (readinessProbe: {grpc: {port: %d}}), answered by the standard health service, which says SERVING only once the server serves", port)
	if tcp {
		return "tcp-readiness-probe",
			"TCP readiness probe on a gRPC server: it passes once the port is open, before the server serves and whatever its health service says; RPCs sent to it then fail (UNAVAILABLE, or the server's own errors)", fix, "grpc-tcp-readiness"
	}
	return "no-readiness-probe",
		"no readiness probe on a gRPC server: a new pod becomes an endpoint as soon as its container starts; clients that connect before the server listens are refused (UNAVAILABLE)", fix, "no-readiness"
}

// grpcNoPreStop says what a missing preStop costs a gRPC server.
const grpcNoPreStop = "no preStop hook on a gRPC server: a GracefulStop at SIGTERM closes the listener and sends GOAWAY at once, while kube-proxy still routes new connections to the pod for a second or more: they are refused (UNAVAILABLE), and a client whose connection just went away has nowhere to go"

// pinnedConnections flags a gRPC port behind a Service that balances
// connections (not headless): each client keeps one HTTP/2 connection to
// one pod.
func pinnedConnections(obj string, port corev1.ContainerPort, svcs []*corev1.Service) (Finding, bool) {
	s := serviceTo(port, svcs, false)
	if s == nil {
		return Finding{}, false
	}
	return Finding{Kind: Availability, Rule: "grpc-pinned-connections", Object: obj + ", service/" + s.Name,
		Message: fmt.Sprintf("gRPC on port %d behind a Service that balances connections: each client keeps one HTTP/2 connection to one pod, so after a rollout the new pods carry only the clients that reconnected, unless the server ages connections out (MaxConnectionAge)", port.ContainerPort),
		Fix:     "set the server's MaxConnectionAge with a grace (grpc-go keepalive.ServerParameters, e.g. 5m and 30s), or use a headless Service with client-side round_robin"}, true
}

// serviceTo is the first of svcs, headless or not as asked, with a port
// that sends to port; nil if none.
func serviceTo(port corev1.ContainerPort, svcs []*corev1.Service, headless bool) *corev1.Service {
	for _, s := range svcs {
		if (s.Spec.ClusterIP == corev1.ClusterIPNone) != headless {
			continue
		}
		if slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return targets(sp, port) }) {
			return s
		}
	}
	return nil
}

// resolveEvery is how seldom grpc-go's DNS resolver asks again: at most
// once every 30 s after an answer.
const resolveEvery = 30

// resolvingClients flags a gRPC port behind a headless Service whose
// pods keep serving less than resolveEvery seconds after their deletion
// (the preStop sleep): clients that balance over the Service's name
// learn of new pods only when they resolve again.
func resolvingClients(obj string, port corev1.ContainerPort, svcs []*corev1.Service, preStop int64) (Finding, bool) {
	s := serviceTo(port, svcs, true)
	if s == nil || preStop > resolveEvery {
		return Finding{}, false
	}
	return Finding{Kind: Loss, Rule: "grpc-headless-short-prestop", Object: obj + ", service/" + s.Name, Variant: "grpc-round-robin",
		Message: fmt.Sprintf("gRPC on port %d behind a headless Service, and the pods stop serving %d s after their deletion (the preStop sleep): clients that balance over its DNS name (round_robin) learn of new pods only when they resolve it again, which grpc-go does at most every %d s after an answer; clients that resolved less than that before every pod they know has stopped (started in the same release, or moved by an earlier GOAWAY) have nowhere to send", port.ContainerPort, preStop, resolveEvery),
		Fix:     fmt.Sprintf("keep each old pod serving longer than the clients' re-resolution: a preStop sleep above %d s (lifecycle.preStop.sleep.seconds: %d) and terminationGracePeriodSeconds above it; or put xDS or a proxy in front", resolveEvery, resolveEvery+5)}, true
}

package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nodrop-dev/nodrop/loadgen"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Target names what a scenario rolls and where load goes; empty fields
// are found in the objects.
type Target struct {
	// Deployment is rolled; needed only when the objects hold several.
	Deployment string
	// Service carries the load; needed only when several select the
	// Deployment's pods.
	Service string
	// Port is the Service port, by name or number; needed only when the
	// Service has several and none is named for the load's protocol
	// (http, or Scheme).
	Port string
	// Scheme is the load's protocol ("" for http): with several ports and
	// no Port, the one named for it, or declaring it as its appProtocol,
	// is taken.
	Scheme string
	// Ingress sends the load through the cluster's ingress controller
	// (Env.Ingress) instead of a NodePort: nodrop adds an Ingress that
	// routes a host of the run's own to the Service.
	Ingress bool
}

// Resolved is a target found in a scenario's objects.
type Resolved struct {
	Deployment *appsv1.Deployment
	Service    *corev1.Service
	Port       corev1.ServicePort
	// Added is a NodePort Service nodrop adds beside the user's, selecting
	// the same pods on the same port, when the user's has no node port:
	// load must reach kube-proxy's rules from outside the cluster, and the
	// user's objects are never changed.
	Added *corev1.Service
	// Front is the Deployment whose pods the named Service selects when
	// they are not the rolled one's: a proxy in front of it (load goes
	// through the proxy to the pods being rolled). Nil when the Service
	// selects the rolled pods themselves.
	Front *appsv1.Deployment
}

// AddedSuffix ends the name of a Service nodrop adds.
const AddedSuffix = "-nodrop"

// Resolve finds the Deployment, the Service that selects its pods and
// the port load goes to. Every failure is bad input, said in one line.
func Resolve(objs []*unstructured.Unstructured, t Target) (*Resolved, error) {
	var deps []*appsv1.Deployment
	var svcs []*corev1.Service
	for _, o := range objs {
		switch o.GroupVersionKind().GroupKind().String() {
		case "Deployment.apps":
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
				return nil, badInputf("deployment %s: %v", o.GetName(), err)
			}
			deps = append(deps, d)
		case "Service":
			s := &corev1.Service{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, s); err != nil {
				return nil, badInputf("service %s: %v", o.GetName(), err)
			}
			svcs = append(svcs, s)
		}
	}
	d, err := pickDeployment(deps, t.Deployment)
	if err != nil {
		return nil, err
	}
	svc, front, err := pickService(svcs, deps, d, t.Service)
	if err != nil {
		return nil, err
	}
	port, err := pickPort(svc, t.Port, t.Scheme)
	if err != nil {
		return nil, err
	}
	r := &Resolved{Deployment: d, Service: svc, Port: port, Front: front}
	if t.Ingress {
		// The controller routes to the Service's endpoints: it needs no
		// node port, and a headless Service has endpoints too.
		return r, nil
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			// A headless Service has no virtual IP, so no kube-proxy rule
			// either; the added one has both.
			port.Port = targetPortNumber(port, served(d, front))
		}
		r.Added = &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: svc.Name + AddedSuffix, Labels: map[string]string{"app.kubernetes.io/managed-by": "nodrop"}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeNodePort,
				Selector: svc.Spec.Selector,
				Ports:    []corev1.ServicePort{{Name: port.Name, Protocol: port.Protocol, Port: port.Port, TargetPort: port.TargetPort}},
			},
		}
		if r.Added.Spec.Ports[0].Port == 0 {
			r.Added.Spec.Ports[0].Port = 80
		}
		// The Service's other named ports too, so a load on another
		// port of it (gRPC beside HTTP) has a node port as well.
		for _, p := range svc.Spec.Ports {
			if p.Name == "" || p.Name == port.Name {
				continue
			}
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				p.Port = targetPortNumber(p, served(d, front))
			}
			r.Added.Spec.Ports = append(r.Added.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, AppProtocol: p.AppProtocol})
		}
	}
	return r, nil
}

// served is the Deployment whose pods a Service's ports lead to: the
// proxy in front, if any.
func served(d, front *appsv1.Deployment) *appsv1.Deployment {
	if front != nil {
		return front
	}
	return d
}

// PodPort is the container port of the rolled pods that the Service
// port leads to (for a proxy in front, of the proxy's pods).
func (r *Resolved) PodPort() int32 {
	if r.Front != nil {
		return targetPortNumber(r.Port, r.Front)
	}
	return targetPortNumber(r.Port, r.Deployment)
}

func pickDeployment(deps []*appsv1.Deployment, name string) (*appsv1.Deployment, error) {
	names := make([]string, len(deps))
	for i, d := range deps {
		names[i] = d.Name
		if name != "" && d.Name == name {
			return d, nil
		}
	}
	switch {
	case len(deps) == 0:
		return nil, badInputf("no Deployment in the manifests: nodrop rolls a Deployment")
	case name != "":
		return nil, badInputf("no Deployment named %q in the manifests (found: %s)", name, strings.Join(names, ", "))
	case len(deps) > 1:
		return nil, badInputf("%d Deployments in the manifests (%s): name the one to roll with --deployment", len(deps), strings.Join(names, ", "))
	}
	return deps[0], nil
}

// selects: a Service selects a Deployment's pods when its selector is not
// empty and matches the pod template's labels.
func selects(s *corev1.Service, d *appsv1.Deployment) bool {
	if len(s.Spec.Selector) == 0 {
		return false
	}
	return labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels))
}

// pickService finds the Service load goes through: the one named, or
// the only one selecting d's pods. A named Service may instead select the
// pods of another Deployment of the manifests: a proxy in front of d,
// returned as front.
func pickService(svcs []*corev1.Service, deps []*appsv1.Deployment, d *appsv1.Deployment, name string) (svc *corev1.Service, front *appsv1.Deployment, err error) {
	var matching []*corev1.Service
	var names []string
	for _, s := range svcs {
		if name != "" && s.Name == name {
			if selects(s, d) {
				return s, nil, nil
			}
			for _, other := range deps {
				if other != d && selects(s, other) {
					return s, other, nil
				}
			}
			return nil, nil, badInputf("service %s selects neither the pods of deployment %s nor those of another deployment in the manifests (its selector %v, the pods' labels %v)", s.Name, d.Name, s.Spec.Selector, d.Spec.Template.Labels)
		}
		if selects(s, d) {
			matching = append(matching, s)
			names = append(names, s.Name)
		}
	}
	switch {
	case name != "":
		return nil, nil, badInputf("no Service named %q in the manifests", name)
	case len(matching) == 0:
		return nil, nil, badInputf("no Service in the manifests selects the pods of deployment %s (labels %v): load goes through a Service, as clients' does", d.Name, d.Spec.Template.Labels)
	case len(matching) > 1:
		return nil, nil, badInputf("%d Services select the pods of deployment %s (%s): name one with --service", len(matching), d.Name, strings.Join(names, ", "))
	}
	return matching[0], nil, nil
}

func pickPort(s *corev1.Service, want, scheme string) (corev1.ServicePort, error) {
	var names []string
	for _, p := range s.Spec.Ports {
		names = append(names, portName(p))
		if want != "" && (p.Name == want || strconv.Itoa(int(p.Port)) == want) {
			return p, nil
		}
	}
	if want != "" {
		return corev1.ServicePort{}, badInputf("service %s has no port %q (ports: %s)", s.Name, want, strings.Join(names, ", "))
	}
	switch len(s.Spec.Ports) {
	case 0:
		return corev1.ServicePort{}, badInputf("service %s has no ports", s.Name)
	case 1:
		return s.Spec.Ports[0], nil
	}
	if scheme == "" {
		scheme = "http"
	}
	if i := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return speaks(p, scheme) }); i >= 0 {
		return s.Spec.Ports[i], nil
	}
	return corev1.ServicePort{}, badInputf("service %s has %d ports (%s), none named %s: name the one load goes to with --port", s.Name, len(s.Spec.Ports), strings.Join(names, ", "), scheme)
}

// speaks reports whether a Service port says it speaks scheme: by its
// name or its appProtocol.
func speaks(p corev1.ServicePort, scheme string) bool {
	return p.Name == scheme || p.AppProtocol != nil && slices.Contains(loadgen.AppProtocols(scheme), *p.AppProtocol)
}

func portName(p corev1.ServicePort) string {
	if p.Name == "" {
		return strconv.Itoa(int(p.Port))
	}
	return fmt.Sprintf("%s (%d)", p.Name, p.Port)
}

// targetPortNumber is the container port a Service port leads to.
func targetPortNumber(p corev1.ServicePort, d *appsv1.Deployment) int32 {
	switch {
	case p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal != 0:
		return p.TargetPort.IntVal
	case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
		// Native sidecars (init containers that keep running) serve too.
		for _, c := range slices.Concat(d.Spec.Template.Spec.InitContainers, d.Spec.Template.Spec.Containers) {
			for _, cp := range c.Ports {
				if cp.Name == p.TargetPort.StrVal {
					return cp.ContainerPort
				}
			}
		}
	}
	return p.Port
}

// IngressController is an ingress controller on the cluster that load
// can go through (Target.Ingress).
type IngressController struct {
	// Name says which it is, as reports name it (Traefik v3.6.12).
	Name string
	// Class is the IngressClass it serves.
	Class string
	// Namespace, Deployment and Service are the controller's; Port is
	// the Service port (by name) of the entry point load goes to, which
	// must have a node port.
	Namespace, Deployment, Service, Port string
	// API, when set, is the Service port (by name, with a node port) of
	// Traefik's API: the timeline follows which pods it routes to.
	API string `json:",omitempty"`
}

// IngressHostSuffix ends the host of the Ingress a run adds: the run's
// namespace, then this.
const IngressHostSuffix = ".nodrop.test"

// IngressHost is the host a run in namespace ns routes through its
// Ingress.
func IngressHost(ns string) string { return ns + IngressHostSuffix }

// ingressFor is the Ingress a run adds in namespace ns: every path of
// IngressHost(ns) to the target's Service port.
func (r *Resolved) ingressFor(ns string, c *IngressController) *networkingv1.Ingress {
	return NewIngress(r.Service.Name+AddedSuffix, c.Class, IngressHost(ns), r.Service.Name, r.Port.Port)
}

// NewIngress is an Ingress of class routing every path of host to a
// Service port, labelled as nodrop's.
func NewIngress(name, class, host, service string, port int32) *networkingv1.Ingress {
	prefix := networkingv1.PathTypePrefix
	return &networkingv1.Ingress{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "nodrop"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: &class,
			Rules: []networkingv1.IngressRule{{
				Host: host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: service, Port: networkingv1.ServiceBackendPort{Number: port},
						}},
					}},
				}},
			}},
		},
	}
}

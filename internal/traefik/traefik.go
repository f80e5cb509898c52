// Package traefik installs the Traefik ingress controller on nodrop's
// kind cluster without a registry: built from the Go module proxy and
// packaged FROM scratch (internal/gomodule), loaded into the nodes, and
// run with its Kubernetes Ingress provider, so that load can reach the
// rolled pods host → controller's NodePort → pods, as most production
// traffic does.
//
// ingress-nginx, the controller the brief names first, cannot be built
// here: six of the Lua libraries it loads are neither Debian packages nor
// Go modules. Traefik updates its backends in memory when EndpointSlices
// change, with no reload, which is what ingress-nginx's Lua balancer
// does too.
package traefik

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/nodrop-dev/nodrop/internal/gomodule"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Version is the Traefik release nodrop installs: the newest whose
// dependencies the module proxy serves in full (v3.7's basic-auth fork
// and several of lego v5's DNS providers it does not).
const Version = "v3.6.12"

// Where the controller lives, and the IngressClass it serves.
const (
	Namespace = "nodrop-ingress"
	Name      = "traefik"
	Class     = "nodrop-traefik"
	// controller is the IngressClass controller Traefik answers to.
	controller = "traefik.io/ingress-controller"
	// WebPort is the Service port of the entry point load goes to;
	// AdminPort that of Traefik's API and ping.
	WebPort   = 80
	AdminPort = 9000
)

var program = gomodule.Program{
	Module: "github.com/traefik/traefik/v3", Version: Version, Package: "cmd/traefik", Name: "traefik",
	Repo: "nodrop/traefik", Dir: "traefik", About: "about 8 minutes",
}

// Build compiles Traefik (once; the binary is cached) and builds its
// image unless Docker has it.
func Build(ctx context.Context, cacheDir string, log *progress.Logger) (string, error) {
	b, err := program.Build(ctx, cacheDir, log)
	if err != nil {
		return "", err
	}
	return b.Image, nil
}

// Controller is the installed controller, as scenarios send load
// through it.
func Controller() *scenario.IngressController {
	return &scenario.IngressController{Name: "Traefik " + Version, Class: Class, Namespace: Namespace, Deployment: Name, Service: Name, Port: "web", API: "admin"}
}

var labels = map[string]string{"app.kubernetes.io/name": Name, "app.kubernetes.io/part-of": "nodrop"}

// Args are Traefik's static configuration: one entry point for load,
// one for its API and ping, the Ingress provider for Class, nothing sent
// home. Everything else is Traefik's default, as a user would run it:
// its providers' changes applied at most every 2 s
// (providersThrottleDuration), no retries, kept-alive connections to
// the pods.
func Args() []string {
	return []string{
		"--entryPoints.web.address=:8000",
		"--entryPoints.traefik.address=:9000",
		"--ping=true",
		"--api=true",
		"--api.insecure=true",
		"--api.dashboard=false",
		"--providers.kubernetesingress=true",
		"--providers.kubernetesingress.ingressClass=" + Class,
		"--global.checkNewVersion=false",
		"--global.sendAnonymousUsage=false",
		"--log.level=INFO",
		"--log.noColor=true",
	}
}

// Install applies the controller running image and waits until it is
// available. The objects are cluster infrastructure, as Kruise's are:
// they outlive runs, and each run adds its own Ingress.
func Install(ctx context.Context, rc *rest.Config, image string, log *progress.Logger, t kube.Timeouts) error {
	step := log.Start("installing Traefik %s (%s)", Version, image)
	c, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return step.Fail(err)
	}
	creator, err := kube.NewCreator(rc)
	if err != nil {
		return step.Fail(err)
	}
	objs, err := Objects(image)
	if err != nil {
		return step.Fail(err)
	}
	if err := creator.Apply(ctx, objs); err != nil {
		return step.Fail(err)
	}
	if err := kube.WaitAvailable(ctx, c, Namespace, Name, t.Available, t); err != nil {
		return step.Fail(fmt.Errorf("waiting for Traefik: %w", err))
	}
	step.Done()
	return nil
}

// Objects are the controller's: its namespace, account, the cluster role
// its Ingress provider needs, the IngressClass, one replica, and a
// NodePort Service for load and for its API.
func Objects(image string) ([]*unstructured.Unstructured, error) {
	tm := func(apiVersion, kind string) metav1.TypeMeta {
		return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
	}
	meta := metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: labels}
	ns := &corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "nodrop"}}}
	account := &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta}
	role := &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: "nodrop-traefik", Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "secrets", "nodes"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: "nodrop-traefik", Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}},
	}
	class := &networkingv1.IngressClass{
		TypeMeta:   tm("networking.k8s.io/v1", "IngressClass"),
		ObjectMeta: metav1.ObjectMeta{Name: Class, Labels: labels},
		Spec:       networkingv1.IngressClassSpec{Controller: controller},
	}
	d := deployment(meta, image)
	d.TypeMeta = tm("apps/v1", "Deployment")
	svc := &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "web", Port: WebPort, TargetPort: intstr.FromString("web")},
				{Name: "admin", Port: AdminPort, TargetPort: intstr.FromString("admin")},
			},
		},
	}
	var out []*unstructured.Unstructured
	for _, o := range []runtime.Object{ns, account, role, binding, class, d, svc} {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return nil, err
		}
		out = append(out, &unstructured.Unstructured{Object: u})
	}
	return out, nil
}

func deployment(meta metav1.ObjectMeta, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					Containers: []corev1.Container{{
						Name:  Name,
						Image: image,
						// Loaded into the nodes, never pulled.
						ImagePullPolicy: corev1.PullNever,
						Args:            Args(),
						Ports:           []corev1.ContainerPort{{Name: "web", ContainerPort: 8000}, {Name: "admin", ContainerPort: 9000}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ping", Port: intstr.FromString("admin")}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr.To(true),
							RunAsUser:                ptr.To[int64](65534),
							ReadOnlyRootFilesystem:   ptr.To(true),
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
					}},
					Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
}

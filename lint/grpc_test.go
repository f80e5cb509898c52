package lint

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// grpcApp is a gRPC Deployment as a user writes one, with its Service.
func grpcApp(t *testing.T, probe *corev1.Probe, preStop bool, headless bool, portName string) []*unstructured.Unstructured {
	t.Helper()
	c := corev1.Container{Name: "api", Image: "example/api:1", Command: []string{"/api"},
		Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: 9090}}, ReadinessProbe: probe}
	if preStop {
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
	}
	labels := map[string]string{"app": "api"}
	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}},
	}
	h2c := "kubernetes.io/h2c"
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(9090), AppProtocol: &h2c}}},
	}
	if headless {
		s.Spec.ClusterIP = corev1.ClusterIPNone
	}
	var out []*unstructured.Unstructured
	for _, o := range []any{d, s} {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

// longPreStop is objs with the Deployment's preStop sleep made 35 s (and
// its grace period above it).
func longPreStop(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(objs[0].Object, "spec", "template", "spec", "containers")
	if err := unstructured.SetNestedField(cs[0].(map[string]any), int64(35), "lifecycle", "preStop", "sleep", "seconds"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(objs[0].Object, cs, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(objs[0].Object, int64(60), "spec", "template", "spec", "terminationGracePeriodSeconds"); err != nil {
		t.Fatal(err)
	}
	return objs
}

// A gRPC server is found by its port's name, its Service's appProtocol or
// its gRPC probe, and its findings speak gRPC: the native probe as the
// fix for a TCP one, GOAWAY for a missing preStop, and connections pinned
// by a Service that balances connections.
func TestGRPCFindings(t *testing.T) {
	tcp := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9090)}}}
	native := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}
	for _, tc := range []struct {
		name     string
		objs     []*unstructured.Unstructured
		want     []string
		inFixOrM string // a word the findings must say
	}{
		{"tcp probe, no preStop, ClusterIP", grpcApp(t, tcp, false, false, "api"), []string{"grpc-pinned-connections", "no-prestop", "tcp-readiness-probe"}, "readinessProbe: {grpc: {port: 9090}}"},
		{"no probe, port named grpc", grpcApp(t, nil, true, false, "grpc"), []string{"grpc-pinned-connections", "no-readiness-probe"}, "UNAVAILABLE"},
		{"native probe, preStop 5 s, headless", grpcApp(t, native, true, true, "api"), []string{"grpc-headless-short-prestop"}, "at most every 30 s"},
		{"native probe, preStop 35 s, headless", longPreStop(t, grpcApp(t, native, true, true, "api")), nil, ""},
	} {
		var got []string
		var text strings.Builder
		for _, f := range Check(tc.objs, Options{}) {
			if f.Kind == Hardening || f.Rule == "no-pdb" {
				continue
			}
			got = append(got, f.Rule)
			text.WriteString(f.Message + " " + f.Fix + "\n")
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) || !strings.Contains(text.String(), tc.inFixOrM) {
			t.Errorf("%s: findings %v, want %v, saying %q:\n%s", tc.name, got, tc.want, tc.inFixOrM, text.String())
		}
		if slices.Contains(got, "no-prestop") && !strings.Contains(text.String(), "GOAWAY") {
			t.Errorf("%s: no-prestop does not speak gRPC:\n%s", tc.name, text.String())
		}
	}
}

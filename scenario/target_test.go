package scenario

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func objects(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(d), &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func deployment(name, app string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: ` + name + `}
spec:
  selector: {matchLabels: {app: ` + app + `}}
  template:
    metadata: {labels: {app: ` + app + `, tier: web}}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{name: http, containerPort: 8080}]
`
}

func service(name, app, typ, ports string) string {
	return `apiVersion: v1
kind: Service
metadata: {name: ` + name + `}
spec:
  type: ` + typ + `
  selector: {app: ` + app + `}
  ports: ` + ports + `
`
}

func TestResolveFindsTheDeploymentAndItsService(t *testing.T) {
	objs := objects(t,
		`{apiVersion: v1, kind: ConfigMap, metadata: {name: conf}}`,
		service("other", "other", "ClusterIP", "[{port: 80}]"),
		service("web", "web", "NodePort", "[{name: http, port: 80, targetPort: http}]"),
		deployment("web", "web"))
	r, err := Resolve(objs, Target{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Deployment.Name != "web" || r.Service.Name != "web" || r.Port.Port != 80 || r.Added != nil {
		t.Fatalf("resolved %s/%s:%d added %v", r.Deployment.Name, r.Service.Name, r.Port.Port, r.Added)
	}
}

func TestResolveAddsANodePortBesideAClusterIPService(t *testing.T) {
	objs := objects(t, deployment("web", "web"), service("web", "web", "ClusterIP", "[{name: metrics, port: 9090}, {name: http, port: 80, targetPort: http}]"))
	r, err := Resolve(objs, Target{})
	if err != nil {
		t.Fatal(err)
	}
	a := r.Added
	if a == nil || a.Name != "web"+AddedSuffix || a.Spec.Type != "NodePort" || a.Spec.Selector["app"] != "web" || len(a.Spec.Ports) != 2 || a.Spec.Ports[0].Port != 80 || a.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Fatalf("added %+v", a)
	}
	// The load's port first; the others beside it, for loads on them.
	if a.Spec.Ports[1].Name != "metrics" || a.Spec.Ports[1].Port != 9090 {
		t.Fatalf("added ports %+v", a.Spec.Ports)
	}
	// The user's own Service is not changed.
	if r.Service.Spec.Type != "ClusterIP" {
		t.Fatalf("user's service changed to %s", r.Service.Spec.Type)
	}
}

func TestResolveBadInputIsOneClearLine(t *testing.T) {
	for _, tc := range []struct {
		name   string
		objs   []string
		target Target
		want   string
	}{
		{"no deployment", []string{service("web", "web", "NodePort", "[{port: 80}]")}, Target{}, "no Deployment in the manifests"},
		{"two deployments", []string{deployment("a", "a"), deployment("b", "b")}, Target{}, "2 Deployments in the manifests (a, b): name the one to roll with --deployment"},
		{"named deployment missing", []string{deployment("a", "a")}, Target{Deployment: "b"}, `no Deployment named "b"`},
		{"no service", []string{deployment("web", "web"), service("x", "other", "NodePort", "[{port: 80}]")}, Target{}, "no Service in the manifests selects the pods of deployment web"},
		{"named service selects other pods", []string{deployment("web", "web"), service("x", "other", "NodePort", "[{port: 80}]")}, Target{Service: "x"}, "service x selects neither the pods of deployment web nor those of another deployment"},
		{"two services", []string{deployment("web", "web"), service("a", "web", "NodePort", "[{port: 80}]"), service("b", "web", "NodePort", "[{port: 80}]")}, Target{}, "name one with --service"},
		{"port missing", []string{deployment("web", "web"), service("web", "web", "NodePort", "[{name: http, port: 80}]")}, Target{Port: "grpc"}, `service web has no port "grpc" (ports: http (80))`},
		{"ports ambiguous", []string{deployment("web", "web"), service("web", "web", "NodePort", "[{name: a, port: 80}, {name: b, port: 81}]")}, Target{}, "name the one load goes to with --port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve(objects(t, tc.objs...), tc.target)
			if err == nil || !errors.Is(err, ErrBadInput) {
				t.Fatalf("err = %v, want bad input", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %q, want one line containing %q", err, tc.want)
			}
		})
	}
}

// A named Service in front of another Deployment of the manifests (a
// proxy) carries the load to the rolled one through it.
func TestResolveTakesAProxyInFront(t *testing.T) {
	objs := objects(t, deployment("web", "web"), service("web", "web", "ClusterIP", "[{port: 80}]"),
		deployment("lb", "lb"), service("lb", "lb", "NodePort", "[{name: http, port: 80}]"))
	r, err := Resolve(objs, Target{Deployment: "web", Service: "lb"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Deployment.Name != "web" || r.Service.Name != "lb" || r.Front == nil || r.Front.Name != "lb" || r.Added != nil {
		t.Fatalf("resolved %+v", r)
	}
	r, err = Resolve(objs, Target{Deployment: "web", Service: "web"})
	if err != nil || r.Front != nil {
		t.Fatalf("the rolled pods' own Service is no proxy: %+v, %v", r, err)
	}
}

func TestResolvePicksPortsByNameOrNumber(t *testing.T) {
	objs := objects(t, deployment("web", "web"), service("web", "web", "NodePort", "[{name: a, port: 80}, {name: b, port: 81}]"))
	for want, port := range map[string]int32{"b": 81, "80": 80} {
		r, err := Resolve(objs, Target{Port: want})
		if err != nil || r.Port.Port != port {
			t.Fatalf("--port %s: %v, %v", want, r, err)
		}
	}
}

// A Service that sends to a native sidecar's named port leads to that
// port of the pods, as it does to a container's.
func TestResolveFollowsANamedPortToANativeSidecar(t *testing.T) {
	d := strings.Replace(deployment("web", "web"), "      containers:\n", `      initContainers:
      - name: proxy
        image: proxy:1
        restartPolicy: Always
        ports: [{name: edge, containerPort: 8000}]
      containers:
`, 1)
	r, err := Resolve(objects(t, d, service("web", "web", "NodePort", "[{name: http, port: 80, targetPort: edge}]")), Target{})
	if err != nil {
		t.Fatal(err)
	}
	if r.PodPort() != 8000 {
		t.Fatalf("pod port %d, want the sidecar's 8000", r.PodPort())
	}
}

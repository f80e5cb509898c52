package scenario

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nodrop-dev/nodrop/manifest"
)

// Through an ingress, nodrop adds no NodePort Service (the controller
// routes to the endpoints) and the Ingress it adds routes the run's own
// host, every path, to the target's Service port, in the controller's
// class.
func TestIngressRoutesTheRunsHostToTheService(t *testing.T) {
	objs, err := manifest.Decode([]byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: app, image: app, ports: [{name: http, containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Resolve(objs, Target{})
	if err != nil || plain.Added == nil {
		t.Fatalf("without an ingress a ClusterIP Service gets a NodePort twin: %v, %+v", err, plain)
	}
	r, err := Resolve(objs, Target{Ingress: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Added != nil {
		t.Errorf("a NodePort Service added: %s", r.Added.Name)
	}
	ing := r.ingressFor("nodrop-abc", &IngressController{Class: "nodrop-traefik"})
	rule := ing.Spec.Rules[0]
	backend := rule.HTTP.Paths[0].Backend.Service
	if *ing.Spec.IngressClassName != "nodrop-traefik" || rule.Host != "nodrop-abc.nodrop.test" || rule.HTTP.Paths[0].Path != "/" || backend.Name != "web" || backend.Port.Number != 80 {
		t.Errorf("ingress %+v", ing.Spec)
	}
}

// The controller's view is said in pods, ready ones apart from those
// fenced (terminating: no new requests), and a dropped route apart from
// an API that does not answer.
func TestReadIngressSaysWhichPodsTraefikRoutesTo(t *testing.T) {
	body := ""
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/http/services/ns-web-80@kubernetes" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	u := srv.URL + "/api/http/services/ns-web-80@kubernetes"
	pods := map[string]string{"10.0.0.1": "web-a", "10.0.0.2": "web-b"}
	podWithIP := func(ip string) string { return pods[ip] }
	for _, c := range []struct {
		status int
		body   string
		want   string
		ok     bool
	}{
		{200, `{"loadBalancer":{"servers":[{"url":"http://10.0.0.2:8080"},{"url":"http://10.0.0.1:8080"}]}}`, "routes to web-a, web-b", true},
		{200, `{"loadBalancer":{"servers":[{"url":"http://10.0.0.1:8080","fenced":true},{"url":"http://10.0.0.3:8080"}]}}`, "routes to http://10.0.0.3:8080; terminating, no new requests: web-a", true},
		{200, `{"loadBalancer":{"servers":[{"url":"http://10.0.0.1:8080","fenced":true}]}}`, "routes to no ready pod; terminating, no new requests: web-a", true},
		{404, `not found`, "has no route to the Service", true},
		{500, `oops`, "", false},
	} {
		status, body = c.status, c.body
		got, ok := readIngress(context.Background(), srv.Client(), u, podWithIP)
		if got != c.want || ok != c.ok {
			t.Errorf("%d %s: %q %v, want %q %v", c.status, c.body, got, ok, c.want, c.ok)
		}
	}
}

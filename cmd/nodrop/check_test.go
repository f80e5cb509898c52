package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/fixtures"

	"github.com/nodrop-dev/nodrop/scenario"
)

const testDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: DEPLOY}
spec:
  selector: {matchLabels: {app: DEPLOY}}
  template:
    metadata: {labels: {app: DEPLOY}}
    spec:
      containers:
      - name: web
        image: web:1
        ports: [{name: http, containerPort: 8080}]
`

const testService = `apiVersion: v1
kind: Service
metadata: {name: SVC}
spec:
  selector: {app: APP}
  ports: [{name: http, port: 80, targetPort: http}]
`

func deploymentYAML(name string) string { return strings.ReplaceAll(testDeployment, "DEPLOY", name) }
func serviceYAML(name, app string) string {
	return strings.NewReplacer("SVC", name, "APP", app).Replace(testService)
}

func writeManifest(t *testing.T, docs ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Bad input to check is found before any cluster is touched: one line,
// exit 2 (these tests have no cluster, so reaching one would fail
// differently).
func TestCheckBadInputIsOneLineAndExit2(t *testing.T) {
	good := writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"check"}, "name your manifests with -f FILE, -k DIR or --chart DIR"},
		{[]string{"check", "-f", "/nonexistent.yaml"}, "reading /nonexistent.yaml"},
		{[]string{"check", "-f", writeManifest(t, "kind: [unclosed\n")}, "document 1"},
		{[]string{"check", "-f", writeManifest(t, "just: text\n")}, "not a Kubernetes object"},
		{[]string{"check", "-f", writeManifest(t, serviceYAML("web", "web"))}, "no Deployment in the manifests"},
		{[]string{"check", "-f", writeManifest(t, deploymentYAML("a"), deploymentYAML("b"), serviceYAML("a", "a"))}, "2 Deployments in the manifests (a, b): name the one to roll with --deployment"},
		{[]string{"check", "-f", writeManifest(t, deploymentYAML("web"), serviceYAML("other", "other"))}, "no Service in the manifests selects the pods of deployment web"},
		{[]string{"check", "-f", good, "--port", "grpc"}, `service web has no port "grpc"`},
		{[]string{"check", "-f", good, "--mode", "sometimes"}, `--mode "sometimes"`},
		{[]string{"check", "-f", good, "--load-from", "elsewhere"}, `--load-from "elsewhere": want host or cluster`},
		{[]string{"check", "-f", good, "--load-pods", "3"}, "--load-pods, --load-nodes, --load-cpu and --generator-image are for --load-from cluster"},
		{[]string{"check", "-f", good, "--load-cpu", "1"}, "--load-pods, --load-nodes, --load-cpu and --generator-image are for --load-from cluster"},
		{[]string{"check", "-f", good, "--load-from", "cluster", "--load-cpu", "lots"}, `--load-cpu "lots": want a CPU quantity such as 500m or 1`},
		{[]string{"check", "-f", good, "--load-from", "cluster", "--load-pods", "0"}, "--load-pods must be 1–50, got 0"},
		{[]string{"check", "-f", good, "--load-from", "cluster", "--kubeconfig", "/nonexistent"}, "--load-from cluster on a cluster of your own needs --generator-image"},
		{[]string{"check", "-f", good, "--load-from", "cluster", "--via", "nginx-reload"}, "--load-from cluster goes to the Service's ClusterIP: with --via, only through the ingress controller"},
		{[]string{"check", "-f", good, "--protocol", "tcp"}, `--protocol "tcp": want http, h2c or grpc`},
		{[]string{"check", "-f", good, "--protocol", "h2c", "--mode", "fresh"}, "HTTP/2 load is long-lived"},
		{[]string{"check", "-f", good, "--protocol", "h2c", "--streams", "2"}, "--streams need --protocol grpc"},
		{[]string{"check", "-f", good, "--protocol", "grpc", "--mode", "fresh"}, "gRPC load is long-lived"},
		{[]string{"check", "-f", good, "--protocol", "grpc", "--grpc-method", "Check"}, "--grpc-method must be /package.Service/Method"},
		{[]string{"check", "-f", good, "--streams", "2"}, "need --protocol grpc"},
		{[]string{"check", "-f", good, "--protocol", "grpc", "--balancer", "round_robin"}, "add --load-from cluster"},
		{[]string{"check", "-f", good, "--protocol", "grpc", "--balancer", "least_request", "--load-from", "cluster"}, "want pick_first or round_robin"},
		{[]string{"check", "-f", good, "--balancer", "round_robin"}, "need --protocol grpc"},
		{[]string{"load", "--url", "http://127.0.0.1:1", "--balancer", "round_robin"}, "balancer"},
		{[]string{"check", "-f", good, "--disruption", "earthquake"}, `unknown disruption "earthquake"`},
		{[]string{"check", "-f", good, "--disruption", "scale-down"}, "scale-down needs at least 2 replicas"},
		{[]string{"check", "-f", good, "--runs", "0"}, "--runs must be 1–100"},
		{[]string{"check", "-f", good, "--rate", "400", "--min-rate", "500"}, "--min-rate must be 1–400 (--rate), got 500"},
		{[]string{"check", "-f", good, "--min-rate", "-1"}, "--min-rate must be 1–1000 (--rate), got -1"},
		{[]string{"check", "-f", good, "--path", "healthz"}, "--path must start with /"},
		{[]string{"check", "-k", t.TempDir()}, "kustomize"},
		{[]string{"check", "-f", good, "--fault", "earthquake"}, `unknown fault "earthquake" (known: kill-pod, crash-pod, drain-node[=DURATION], pause-node[=DURATION], pause-kube-proxy`},
		{[]string{"check", "-f", good, "--fault", "pause-kube-proxy=forever"}, "want a duration from 1s to 5m"},
		{[]string{"check", "-f", good, "--fault", "kill-pod", "--fault-at", "130%"}, `--fault-at "130%"`},
		{[]string{"check", "-f", good, "--fault", "kill-pod", "--kubeconfig", "/nonexistent"}, "only on its own kind cluster"},
		{[]string{"check", "-f", good, "--via", "envoy"}, `--via: no proxy "envoy" (want nginx-reload, haproxy-reload, haproxy-sf, haproxy-runtime, ingress)`},
		{[]string{"check", "-f", good, "--via", "nginx-reload", "--url", "http://127.0.0.1:1/"}, "only nodrop's own kind cluster holds"},
		{[]string{"check", "-f", good, "--via", "ingress", "--kubeconfig", "/nonexistent"}, "only nodrop's own kind cluster holds"},
		{[]string{"check", "-f", writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"), deploymentYAML("lb"), serviceYAML("lb", "lb")), "--deployment", "web", "--service", "lb", "--via", "haproxy-reload"}, "service lb already puts deployment lb in front of deployment web"},
		{[]string{"lint"}, "name your manifests"},
		{[]string{"lint", "-f", writeManifest(t, "kind: [unclosed\n")}, "document 1"},
		{[]string{"images", "load"}, "images load takes one or more image references"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		if code != exitBadInput {
			t.Errorf("%v: exit %d, want 2\n%s%s", tc.args, code, out, errOut)
			continue
		}
		if lines := strings.Count(strings.TrimSpace(errOut), "\n") + 1; lines != 1 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: stderr %q (stdout %q), want one line containing %q", tc.args, errOut, out, tc.want)
		}
	}
}

func TestLintExitCodesAndFindings(t *testing.T) {
	careless := writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"))
	code, out, _ := runCLI(t, "lint", "-f", careless, "--no-images", "--json")
	if code != exitLost {
		t.Fatalf("findings: exit %d, want 1\n%s", code, out)
	}
	var fs []struct{ Kind, Rule, Variant string }
	if err := json.Unmarshal([]byte(out), &fs); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	rules := map[string]string{}
	for _, f := range fs {
		rules[f.Rule] = f.Variant
	}
	for rule, variant := range map[string]string{"no-readiness-probe": "no-readiness", "no-prestop": "no-prestop", "no-pdb": "", "restricted-security-context": ""} {
		if got, ok := rules[rule]; !ok || got != variant {
			t.Errorf("rule %s: variant %q present %v, want %q; all: %v", rule, got, ok, variant, rules)
		}
	}

	shop := filepath.Join("..", "..", "suites", "testdata", "check", "shop.yaml")
	code, out, errOut := runCLI(t, "lint", "-f", shop, "--no-images")
	if code != exitOK || !strings.Contains(out, "no findings") {
		t.Fatalf("a careful manifest: exit %d\n%s%s", code, out, errOut)
	}
}

// --protocol grpc rolls under long-lived gRPC load to the Service's gRPC
// port (named grpc, or declaring appProtocol h2c), calling the method
// asked for (the health service's Check when none), with streams beside.
func TestCheckGRPCPlan(t *testing.T) {
	svc := strings.Replace(serviceYAML("web", "web"), "targetPort: http}]", "targetPort: http}, {name: api, port: 9090, targetPort: 9090, appProtocol: kubernetes.io/h2c}]", 1)
	o := checkOptions{files: []string{writeManifest(t, deploymentYAML("web"), svc)}, mode: "both", protocol: "grpc", path: "/", rate: 500, runs: 1, attempts: 1, disruption: "restart", streams: 2}
	plan, err := planCheck(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.modes) != 1 || plan.modes[0] != fixtures.LongLivedGRPC || plan.resolved.Port.Port != 9090 {
		t.Fatalf("modes %v, port %d; want long-lived gRPC to port 9090", plan.modes, plan.resolved.Port.Port)
	}
	s := plan.scenario(o, plan.modes[0])
	tr := s.Traffic[0]
	if tr.Load.Scheme != "grpc" || tr.Path != "" || tr.Config.Streams != 2 || tr.Load.Target("10.0.0.1:30000", "/") != "grpc://10.0.0.1:30000" {
		t.Fatalf("traffic %+v", tr)
	}
	// The run loads the port the plan chose, not the Service's http one.
	if r, err := scenario.Resolve(s.Objects, s.Target); err != nil || r.Port.Port != 9090 || r.Added == nil || r.Added.Spec.Ports[0].Port != 9090 {
		t.Fatalf("the run resolves %+v (%v); want port 9090 first in the Service nodrop adds", r, err)
	}
	o.grpcMethod = "/pkg.Svc/Do"
	if tr := plan.scenario(o, plan.modes[0]).Traffic[0]; tr.Load.Target("10.0.0.1:30000", tr.Path) != "grpc://10.0.0.1:30000/pkg.Svc/Do" {
		t.Fatalf("with --grpc-method: %s", tr.Load.Target("10.0.0.1:30000", tr.Path))
	}
}

// --protocol h2c rolls under long-lived HTTP/2 load to the Service's one
// port, with the path and method asked for.
func TestCheckH2CPlan(t *testing.T) {
	o := checkOptions{files: []string{writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"))}, mode: "both", protocol: "h2c", path: "/api", method: "POST", rate: 500, runs: 1, attempts: 1, disruption: "restart"}
	plan, err := planCheck(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.modes) != 1 || plan.modes[0] != fixtures.LongLivedHTTP2 {
		t.Fatalf("modes %v; want long-lived HTTP/2", plan.modes)
	}
	tr := plan.scenario(o, plan.modes[0]).Traffic[0]
	if tr.Load.Scheme != "h2c" || tr.Load.Connections != 4 || tr.Config.Method != "POST" || tr.Load.Target("10.0.0.1:30000", tr.Path) != "h2c://10.0.0.1:30000/api" {
		t.Fatalf("traffic %+v, target %s", tr, tr.Load.Target("10.0.0.1:30000", tr.Path))
	}
}

// --via puts nodrop's proxy in front of the user's Service: the run's
// objects are the user's and the proxy's, load goes through the proxy's
// Service, the proxy reads the user's Service's endpoints and sends to
// the pods' port.
func TestCheckViaPutsTheProxyInFront(t *testing.T) {
	o := checkOptions{files: []string{writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"))}, mode: "fresh", via: "haproxy-runtime",
		attempts: 1, runs: 1, rate: 1000, path: "/", disruption: "restart"}
	plan, err := planCheck(o)
	if err != nil {
		t.Fatal(err)
	}
	plan.viaImage = "nodrop/lb:test"
	s := plan.scenario(o, "fresh")
	r, err := scenario.Resolve(s.Objects, s.Target)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deployment.Name != "web" || r.Service.Name != viaName || r.Front == nil || r.Front.Name != viaName {
		t.Fatalf("rolls %s through %s, front %v", r.Deployment.Name, r.Service.Name, r.Front)
	}
	args := strings.Join(r.Front.Spec.Template.Spec.Containers[0].Args, " ")
	if args != "-mode haproxy-runtime -service web -port 8080" {
		t.Errorf("proxy args %q", args)
	}
	if len(plan.objs) != 2 {
		t.Errorf("the plan's own objects changed: %d", len(plan.objs))
	}
}

// --via ingress sends the load through the cluster's ingress controller:
// the run's objects are the user's alone, nodrop adds no NodePort
// Service (the controller routes to the endpoints), and Run adds the
// Ingress.
func TestCheckViaIngressAddsNoObjectsOfItsOwn(t *testing.T) {
	o := checkOptions{files: []string{writeManifest(t, deploymentYAML("web"), serviceYAML("web", "web"))}, mode: "fresh", via: "ingress",
		attempts: 1, runs: 1, rate: 1000, path: "/", disruption: "restart"}
	plan, err := planCheck(o)
	if err != nil {
		t.Fatal(err)
	}
	if plan.resolved.Added != nil {
		t.Errorf("a NodePort Service added: %s", plan.resolved.Added.Name)
	}
	s := plan.scenario(o, "fresh")
	if !s.Target.Ingress || len(s.Objects) != 2 {
		t.Fatalf("target %+v, %d objects", s.Target, len(s.Objects))
	}
}

// -f - reads the manifests from standard input (helm template … | nodrop
// lint -f -), and says the same as the file does; named twice, or with
// nothing on stdin, it is bad input.
func TestManifestsFromStdin(t *testing.T) {
	file := filepath.Join("..", "..", "suites", "testdata", "check", "stock-nginx.yaml")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cli := func(stdin []byte, args ...string) (int, string, string) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), cliEnv+"=1")
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	fc, fout, _ := cli(nil, "lint", "--no-images", "-f", file)
	sc, sout, serr := cli(raw, "lint", "--no-images", "-f", "-")
	if fc != 1 || sc != fc || sout != fout {
		t.Errorf("lint -f FILE: exit %d\n%s\nlint -f - with the file on stdin: exit %d (%s)\n%s", fc, fout, sc, serr, sout)
	}
	for _, tc := range []struct {
		stdin []byte
		args  []string
		want  string
	}{
		{raw, []string{"lint", "-f", "-", "-f", "-"}, "named more than once"},
		{nil, []string{"lint", "-f", "-"}, "standard input (-f -) holds no object"},
		{nil, []string{"check", "-f", "-"}, "standard input (-f -) holds no object"},
	} {
		code, _, errs := cli(tc.stdin, tc.args...)
		if code != exitBadInput || !strings.Contains(errs, tc.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line saying %q", tc.args, code, errs, tc.want)
		}
	}
}

// --chart renders a Helm chart as helm template does: the shop's chart
// is reviewed as its plain manifests are; its values flags without a
// chart, or a chart that is not there, are bad input.
func TestChart(t *testing.T) {
	shop := filepath.Join("..", "..", "examples", "shop")
	fc, fout, _ := runCLI(t, "lint", "--no-images", "-f", filepath.Join(shop, "deploy.yaml"))
	cc, cout, cerr := runCLI(t, "lint", "--no-images", "--chart", filepath.Join(shop, "chart"))
	if cc != fc || cout != fout || !strings.Contains(fout, "deployment/shop") {
		t.Errorf("lint -f deploy.yaml: exit %d\n%s\nlint --chart chart: exit %d (%s)\n%s", fc, fout, cc, cerr, cout)
	}
	// Without a preStop the review says so.
	if code, out, _ := runCLI(t, "lint", "--no-images", "--chart", filepath.Join(shop, "chart"), "--set", "preStopSeconds=0"); code != 1 || !strings.Contains(out, "preStop") {
		t.Errorf("lint --set preStopSeconds=0: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"lint", "-f", filepath.Join(shop, "deploy.yaml"), "--set", "replicas=3"},
		{"lint", "--chart", filepath.Join(shop, "nowhere")},
		{"check", "--chart", filepath.Join(shop, "nowhere")},
	} {
		if code, _, errs := runCLI(t, args...); code != exitBadInput || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, errs)
		}
	}
}

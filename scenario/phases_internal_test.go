package scenario

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// The phases a cluster adds nothing to, each on its own.

func shop(t *testing.T) Scenario {
	return Scenario{
		Name:       "shop",
		Objects:    objects(t, service("web", "web", "NodePort", "[{name: http, port: 80, targetPort: http}, {name: rpc, port: 7000}]"), deployment("web", "web")),
		Traffic:    []Traffic{{Load: loadgen.Load{Name: "keepalive"}, Config: loadgen.Config{Rate: 100}}},
		Disruption: Disruption{Name: "rollout restart", Apply: func(context.Context, *Live) error { return nil }},
	}
}

// validate refuses, before anything is made, what cannot run on env.
func TestValidateRefusesBeforeAnythingIsMade(t *testing.T) {
	noLoad := shop(t)
	noLoad.Traffic = nil
	ingress := shop(t)
	ingress.Target.Ingress = true
	fault := shop(t)
	fault.Faults = []Fault{{Name: "pause kube-proxy", NeedsNodes: true}}
	balancing := shop(t)
	balancing.Traffic[0].Load.Balancer = "round_robin"
	for name, c := range map[string]Scenario{"no load": noLoad, "ingress without a controller": ingress, "a fault on nodes without a shell": fault, "clients that resolve the name, from this process": balancing} {
		if _, err := c.validate(Env{}); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v, want bad input", name, err)
		}
	}
	if target, err := shop(t).validate(Env{}); err != nil || target.Deployment.Name != "web" || target.Service.Name != "web" {
		t.Errorf("a good scenario: %+v, %v", target, err)
	}
}

// aim points each load at its Service's node port, in its protocol, or at
// the user's URL.
func TestAimPointsEachLoad(t *testing.T) {
	s := shop(t)
	s.Traffic = append(s.Traffic, Traffic{Load: loadgen.Load{Name: "long-lived RPC", Scheme: "rpc", Connections: 2, InFlight: 8}, Port: "rpc", Config: loadgen.Config{Rate: 100}})
	s.Traffic[0].Path = "/ping"
	client := fake.NewSimpleClientset(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns-1"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, NodePort: 30080},
			{Name: "rpc", Port: 7000, NodePort: 30700},
		}},
	})
	target, err := s.validate(Env{})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{s: s, env: Env{Client: client, NodeIP: "10.0.0.1"}, target: target, ns: "ns-1", res: s.newResult()}
	if err := r.aim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.cfgs[0].Targets[0]; got != "http://10.0.0.1:30080/ping" || r.res.Traffic[0].URL != got || r.cfgs[0].DisableKeepAlive {
		t.Errorf("keepalive: %q (result %q), fresh %v", got, r.res.Traffic[0].URL, r.cfgs[0].DisableKeepAlive)
	}
	if c := r.cfgs[1]; c.Targets[0] != "rpc://10.0.0.1:30700" || c.Connections != 2 || c.InFlight != 8 {
		t.Errorf("rpc: %q, %d connections, %d in flight", c.Targets[0], c.Connections, c.InFlight)
	}
	r.env.URL = "https://shop.example/"
	if err := r.aim(context.Background()); err != nil || r.cfgs[0].Targets[0] != "https://shop.example/ping" {
		t.Errorf("the user's URL: %q, %v", r.cfgs[0].Targets[0], err)
	}
}

// pods is a Sender that is never asked to send: aim only asks whether
// the load comes from pods.
type pods struct{}

func (pods) Send(context.Context, string, loadgen.Config) (*loadgen.Report, error) { return nil, nil }
func (pods) Where() string                                                         { return "pods" }

// Load from pods goes to the user's own ClusterIP, as their clients'
// does, so the Service's traffic policies apply to it; nodrop waits until
// it serves through the API server, which the kubeconfig reaches.
func TestAimSendsLoadFromPodsToTheUsersClusterIP(t *testing.T) {
	s := shop(t)
	s.Objects = objects(t, service("web", "web", "ClusterIP", "[{name: metrics, port: 9090}, {name: http, port: 80, targetPort: http}]"), deployment("web", "web"))
	target, err := s.validate(Env{})
	if err != nil {
		t.Fatal(err)
	}
	if target.Added == nil {
		t.Fatal("no Service added beside a ClusterIP one")
	}
	client := fake.NewSimpleClientset(
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns-1"},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "metrics", Port: 9090}, {Name: "http", Port: 80}}},
		},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: target.Added.Name, Namespace: "ns-1"},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}}},
		})
	r := &run{s: s, env: Env{Client: client, NodeIP: "10.0.0.1", Generators: pods{}}, target: target, ns: "ns-1", res: s.newResult()}
	if err := r.aim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.cfgs[0].Targets[0]; got != "http://10.96.0.10:80/" || r.res.Traffic[0].URL != got {
		t.Errorf("load from pods to %q (result %q), want the user's ClusterIP", got, r.res.Traffic[0].URL)
	}
	if sp := r.waitVia; sp == nil || sp.ns != "ns-1" || sp.name != "web" || sp.what != "80" || r.waitPath != "" {
		t.Errorf("waits through the API server at %+v, path %q; want the user's Service web, port 80", sp, r.waitPath)
	}
}

// Clients that balance themselves dial the user's Service by its name; a
// headless one's name answers with the pods' addresses, so with the
// pods' port. nodrop itself waits through the node port of the Service
// it adds, which carries the load's port too.
func TestAimSendsBalancingClientsToTheServicesName(t *testing.T) {
	s := shop(t)
	s.Objects = objects(t, service("web", "web", "ClusterIP", "[{name: http, port: 80, targetPort: http}, {name: grpc, port: 9091, targetPort: 9000}]"), deployment("web", "web"))
	s.Objects[0].Object["spec"].(map[string]any)["clusterIP"] = "None"
	s.Traffic[0].Load = loadgen.Load{Name: "client-side gRPC", Scheme: "grpc", Connections: 2, Balancer: "round_robin"}
	s.Traffic[0].Port = "grpc"
	env := Env{NodeIP: "10.0.0.1", Generators: pods{}}
	target, err := s.validate(env)
	if err != nil {
		t.Fatal(err)
	}
	env.Client = fake.NewSimpleClientset(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: target.Added.Name, Namespace: "ns-1"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Port: 8080, NodePort: 30080}, {Name: "grpc", Port: 9000, NodePort: 30900}}},
	})
	r := &run{s: s, env: env, target: target, ns: "ns-1", res: s.newResult()}
	if err := r.aim(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := r.cfgs[0].Targets[0]; got != "grpc://web.ns-1.svc:9000" || r.cfgs[0].Balancer != "round_robin" {
		t.Errorf("balancing clients sent to %q (balancer %q), want the headless Service's name and the pods' port", got, r.cfgs[0].Balancer)
	}
	if r.waitURL != "grpc://10.0.0.1:30900" {
		t.Errorf("waits at %q, want the added Service's node port for grpc", r.waitURL)
	}
}

// The phases that hold something until the run ends give it back last
// first, whichever phase failed.
func TestStopUndoesLastFirst(t *testing.T) {
	var order []string
	client := fake.NewSimpleClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns-1"}})
	rec, err := probes.Start(context.Background(), client, "ns-1")
	if err != nil {
		t.Fatal(err)
	}
	r := &run{env: Env{Client: client, Keep: true}, ns: "ns-1", res: &Result{}, rec: rec}
	r.undo = append(r.undo, func() { order = append(order, "slot") }, func() { order = append(order, "watch") })
	r.cleanups = append(r.cleanups, func(context.Context) error { order = append(order, "cleanup"); return nil })
	failed := errors.New("deploying: boom")
	if err := r.stop(context.Background(), failed); !errors.Is(err, failed) {
		t.Errorf("stop returned %v, want the run's error", err)
	}
	if got := strings.Join(order, " "); got != "watch slot cleanup" {
		t.Errorf("undone in order %q", got)
	}
}

// The GOAWAYs the clients got join the timeline where they arrived, one
// line per pod and moment.
func TestGoAwaysJoinTheTimeline(t *testing.T) {
	t0 := time.Now()
	events := []probes.Event{{At: t0, Kind: probes.PodDeleting, Pod: "old"}, {At: t0.Add(5 * time.Second), Kind: probes.App, Pod: "old", Detail: "grpc_stop"}}
	rep := &loadgen.Report{GoAways: []loadgen.GoAway{
		{At: t0.Add(5001 * time.Millisecond), Pod: "old", Generator: "a"},
		{At: t0.Add(5002 * time.Millisecond), Pod: "old", Generator: "b"},
		{At: t0.Add(5003 * time.Millisecond), Pod: ""},
		{At: t0.Add(9 * time.Second), Pod: "old"},
	}}
	got := withGoAways(events, []*loadgen.Report{rep})
	var lines []string
	for _, e := range got {
		lines = append(lines, e.String())
	}
	want := []string{"pod deleting old", "app old: grpc_stop", "client got GOAWAY old: on 2 connections", "client got GOAWAY: on 1 connection", "client got GOAWAY old: on 1 connection"}
	if !slices.Equal(lines, want) {
		t.Errorf("timeline %q, want %q", lines, want)
	}
}

// A calibration refused because the machine's CPU was taken is tried
// again at half the rate while MinRate allows, and the run says so; a
// calibration refused for anything else, or with no MinRate, is not.
func TestCalibrationFitsTheRateToTheMachine(t *testing.T) {
	busyAbove := func(rate int) SendFunc {
		return func(_ context.Context, cfg loadgen.Config) (*loadgen.Report, error) {
			p := 0.2
			if cfg.Rate > rate {
				p = 0.9
			}
			return &loadgen.Report{Verdict: loadgen.Lossless, RateTarget: cfg.Rate, Generator: loadgen.Generator{CPUPressure: p}}, nil
		}
	}
	for _, tc := range []struct {
		name              string
		minRate, busyOver int
		wantRate          int
		wantErr           bool
	}{
		{"fits at half", 250, 500, 500, false},
		{"fits at a quarter", 250, 300, 250, false},
		{"not at MinRate", 500, 300, 500, true},
		{"no MinRate: the rate as asked", 0, 500, 1000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shop(t)
			s.MinRate = tc.minRate
			s.Calibrate = time.Millisecond
			s.Traffic = append(s.Traffic, Traffic{Load: loadgen.Load{Name: "second"}, Config: loadgen.Config{Rate: 100}})
			var log strings.Builder
			r := &run{s: s, env: Env{Log: progress.New(&log, false)}, res: s.newResult(),
				cfgs: []loadgen.Config{{Rate: 1000}, {Rate: 100}}}
			err := r.calibrateWith(context.Background(), busyAbove(tc.busyOver))
			if (err != nil) != tc.wantErr || err != nil && !errors.Is(err, ErrNotJudged) {
				t.Fatalf("err = %v, want an error %v (not judged)", err, tc.wantErr)
			}
			if r.cfgs[0].Rate != tc.wantRate || r.cfgs[1].Rate != 100*tc.wantRate/1000 {
				t.Errorf("rates %d and %d, want %d and the second halved as often", r.cfgs[0].Rate, r.cfgs[1].Rate, tc.wantRate)
			}
			if got := r.res.Traffic[0].Calibration.RateTarget; got != tc.wantRate {
				t.Errorf("the calibration kept is at %d rps, want %d", got, tc.wantRate)
			}
			if lowered := len(r.res.EarlierAttempts); (lowered > 0) != (tc.wantRate < 1000) ||
				lowered > 0 && !strings.Contains(r.res.EarlierAttempts[0], "at 1000 rps, with nothing happening, some task waited for a CPU 90% of the calibration") {
				t.Errorf("the result says %q", r.res.EarlierAttempts)
			}
		})
	}
	// A calibration that lost requests is a broken set-up, not a busy
	// machine: the rate stays.
	s := shop(t)
	s.MinRate, s.Calibrate = 100, time.Millisecond
	r := &run{s: s, env: Env{Log: progress.New(io.Discard, false)}, res: s.newResult(), cfgs: []loadgen.Config{{Rate: 1000}}}
	lossy := func(_ context.Context, cfg loadgen.Config) (*loadgen.Report, error) {
		return &loadgen.Report{Verdict: loadgen.Lossy, Lost: 1, RateTarget: cfg.Rate}, nil
	}
	if err := r.calibrateWith(context.Background(), lossy); err == nil || r.cfgs[0].Rate != 1000 {
		t.Errorf("a lossy calibration: %v at %d rps, want refused at 1000", err, r.cfgs[0].Rate)
	}
}

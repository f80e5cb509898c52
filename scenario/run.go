// The run of one scenario: a value that holds what the run made (its
// namespace, recorder, faults, load slot) and undoes it on every exit
// path, and the phases Run goes through in order.

package scenario

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// cleanupTimeout bounds what a run does after it ended, interrupted or
// not: dump and delete its namespace.
const cleanupTimeout = 3 * time.Minute

// Run deploys the scenario's objects into a namespace of its own, waits
// until they serve, calibrates, sends load through the disruption until
// it settled and the tail has passed, and judges each load. It deletes
// the namespace at the end (unless env.Keep), also when it fails or ctx
// is cancelled. The error wraps ErrBadInput when the scenario cannot run
// as given and ErrNotJudged when it ran but could not be judged; the
// result holds what the run got to.
func (s Scenario) Run(ctx context.Context, env Env) (res *Result, err error) {
	res = s.newResult()
	target, err := s.validate(env)
	if err != nil {
		return res, err
	}
	r, err := start(ctx, s, env, target, res)
	if err != nil {
		return res, err
	}
	defer func() { err = r.stop(ctx, err) }()
	for _, phase := range []func(context.Context) error{
		r.setUp,         // the scenario's own set-up (a SidecarSet)
		r.deploy,        // the objects, until the Deployment is available
		r.aim,           // where each load goes
		r.waitServing,   // the URL answers
		r.followIngress, // the ingress controller's view of the run
		r.takeSlot,      // a share of the machine's load
		r.favour,        // the load generator first, until the load stops
		r.calibrate,     // the same load with nothing happening
		r.disrupt,       // load through the disruption, its faults, the tail
		r.trace,         // unanswered connections, the controller's events
		r.judge,         // each load against its expectation
		r.verify,        // the scenario's checks
	} {
		if err := phase(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// newResult is the record a run fills in, phase by phase.
func (s Scenario) newResult() *Result {
	res := &Result{Scenario: s.Name, Disruption: s.What()}
	for _, t := range s.Traffic {
		res.Traffic = append(res.Traffic, TrafficResult{Name: t.Load.Name, Expect: t.Expect})
	}
	return res
}

// validate refuses, before anything is created, a scenario that cannot
// run as given on env, and resolves its target.
func (s Scenario) validate(env Env) (*Resolved, error) {
	target, err := Resolve(s.Objects, s.Target)
	if err != nil {
		return nil, err
	}
	if s.Disruption.Apply == nil || len(s.Traffic) == 0 {
		return nil, badInputf("scenario %s needs load and a disruption", s.Name)
	}
	if s.Target.Ingress && env.Ingress == nil {
		return nil, badInputf("load through an ingress needs nodrop's ingress controller on the cluster (nodrop cluster up --with-ingress)")
	}
	if s.LoadFromCluster() && env.Generators == nil {
		return nil, badInputf("scenario %s: its clients balance themselves over the Service's name, which resolves only in the cluster: its load must come from pods there (--load-from cluster)", s.Name)
	}
	for _, f := range s.Faults {
		if f.NeedsNodes && env.Nodes == nil {
			return nil, badInputf("fault %s runs commands on the nodes, which nodrop can do only on a kind cluster it knows (nodrop cluster up)", f.Name)
		}
	}
	return target, nil
}

// run is one run under way: what it made, and what it found so far.
type run struct {
	s      Scenario
	env    Env
	target *Resolved
	res    *Result

	ns      string
	rec     *probes.Recorder
	live    *Live
	creator *kube.Creator
	// cleanups run, in order, once the recorder stopped and before the
	// namespace goes (the set-up's, the faults'); they get a context
	// that outlives the run's.
	cleanups []func(context.Context) error
	// undo run first, last first: what a phase holds until the run ends
	// (the load slot, a watch).
	undo []func()
	// unfavour undoes Env.Favour (favour), nil when nothing is to undo.
	unfavour func()

	cfgs           []loadgen.Config // the loads, aimed (aim)
	waitURL        string           // the first load's URL from this process (waitServing)
	waitVia        *servicePort     // or its Service, through the API server (load from pods)
	waitPath       string
	host           string           // the Host header through an ingress
	controller     *probes.Recorder // the ingress controller's namespace
	controllerFrom time.Time
	watches        []*newConnWatch
	window         Window
	reports        []*loadgen.Report
}

// start creates the run's namespace and starts recording it: from here on,
// stop undoes what the run made.
func start(ctx context.Context, s Scenario, env Env, target *Resolved, res *Result) (*run, error) {
	creator, err := kube.NewCreator(env.REST)
	if err != nil {
		return nil, err
	}
	prefix := s.NamespacePrefix
	if prefix == "" {
		prefix = "nodrop"
	}
	ns, err := kube.CreateNamespace(ctx, env.Client, prefix, s.PodSecurity)
	if err != nil {
		return nil, err
	}
	res.Namespace = ns
	env.Log.Printf("• namespace %s", ns)
	rec, err := probes.Start(ctx, env.Client, ns)
	if err != nil {
		_ = kube.DeleteNamespace(context.WithoutCancel(ctx), env.Client, ns, env.Timeouts)
		return nil, err
	}
	return &run{
		s: s, env: env, target: target, res: res, ns: ns, rec: rec, creator: creator,
		live: &Live{Env: env, Namespace: ns, Deployment: target.Deployment.Name, Recorder: rec},
	}, nil
}

// stop undoes what the run made, on every exit path: what the phases
// hold, the recorder, a dump of the namespace when the run failed, the
// cleanups, and the namespace itself (kept with Env.Keep). It returns err
// joined with whatever failed.
func (r *run) stop(ctx context.Context, err error) error {
	for _, u := range slices.Backward(r.undo) {
		u()
	}
	r.rec.Stop()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if r.env.Dump != nil && (err != nil || !r.res.Passed()) {
		kube.Dump(cctx, r.env.Client, r.ns, r.env.Dump)
	}
	for _, c := range r.cleanups {
		err = errors.Join(err, c(cctx))
	}
	if r.env.Keep {
		if derr := kube.Disown(cctx, r.env.Client, r.ns); derr != nil {
			err = errors.Join(err, derr)
		}
		r.env.Log.Printf("• kept namespace %s (--keep)", r.ns)
		return err
	}
	step := r.env.Log.Start("deleting namespace %s", r.ns)
	if derr := kube.DeleteNamespace(cctx, r.env.Client, r.ns, r.env.Timeouts); derr != nil {
		return errors.Join(err, step.Fail(derr))
	}
	step.Done()
	return err
}

// setUp runs the scenario's own set-up in the fresh namespace.
func (r *run) setUp(ctx context.Context) error {
	if r.s.Setup == nil {
		return nil
	}
	cleanup, err := r.s.Setup(ctx, r.live)
	if cleanup != nil {
		r.cleanups = append(r.cleanups, cleanup)
	}
	if err != nil {
		return fmt.Errorf("setting up: %w", err)
	}
	return nil
}

// aim says where each load goes (a NodePort, the ingress controller, the
// user's URL) and fills in its target, Host header, witness and stall
// hook.
func (r *run) aim(ctx context.Context) error {
	r.cfgs = make([]loadgen.Config, len(r.s.Traffic))
	for i, t := range r.s.Traffic {
		url, err := r.s.url(ctx, r.env, r.ns, r.target, t, false)
		if err != nil {
			return err
		}
		if i == 0 {
			r.waitURL = url
		}
		if r.env.Generators != nil {
			// The generators send from pods: to the ClusterIP. nodrop
			// waits through the API server, which needs nothing but the
			// kubeconfig (a NodePort may not be reachable from here).
			if url, err = r.s.url(ctx, r.env, r.ns, r.target, t, true); err != nil {
				return err
			}
			if sp := r.s.servicePort(r.env, r.ns, r.target, t, true); i == 0 && t.Load.SpeaksHTTP() && !sp.ingress && r.env.URL == "" {
				r.waitVia, r.waitPath = &sp, t.Path
			}
		}
		r.res.Traffic[i].URL = url
		cfg := t.Load.Apply(t.Config)
		cfg.Targets = []string{url}
		if cfg.Witness == nil {
			cfg.Witness = r.env.Witness
		}
		if cfg.OnStall == nil {
			cfg.OnStall = r.env.OnStall
		}
		if r.s.Target.Ingress && t.Port == "" {
			// The controller routes by host: the run's Ingress names one.
			r.host = IngressHost(r.ns)
			cfg.Header = cfg.Header.Clone()
			if cfg.Header == nil {
				cfg.Header = http.Header{}
			}
			cfg.Header.Set("Host", r.host)
		}
		r.cfgs[i] = cfg
	}
	return nil
}

// waitServing waits until the first load's URL answers: over HTTP, or
// over its own protocol (an RPC, a gRPC call) for the others.
func (r *run) waitServing(ctx context.Context) error {
	url := r.waitURL
	what := url
	if r.host != "" {
		what = fmt.Sprintf("%s (host %s)", url, r.host)
	}
	if sp := r.waitVia; sp != nil {
		what = fmt.Sprintf("service %s port %s (through the API server)", sp.name, sp.what)
	}
	step := r.env.Log.Start("waiting for %s to serve", what)
	var err error
	switch {
	case r.waitVia != nil:
		err = kube.WaitServingThroughAPI(ctx, r.env.Client, r.waitVia.ns, r.waitVia.name, r.waitVia.what, r.waitPath, r.env.Timeouts)
	case r.s.Traffic[0].Load.SpeaksHTTP():
		err = kube.WaitServing(ctx, url, r.host, r.env.Timeouts)
	default:
		err = kube.WaitAnswering(ctx, url, r.env.Timeouts, func(context.Context) error { return loadgen.Ask(url, r.cfgs[0].Timeout) })
	}
	if err != nil {
		return step.Fail(badInput{err})
	}
	step.Done()
	return nil
}

// followIngress, for load through the ingress controller, follows how the
// controller sees the run's Ingress, and records the controller's own
// pods: a rollout of the controller is a disruption of the run's.
func (r *run) followIngress(ctx context.Context) error {
	if !r.s.Target.Ingress {
		return nil
	}
	stop, err := followIngress(ctx, r.env, r.ns, r.target, r.rec)
	if err != nil {
		return err
	}
	r.undo = append(r.undo, stop)
	// Only what happens from now on: the recorder starts with the
	// namespace's whole event history, which is not this run's.
	r.controllerFrom = time.Now()
	if r.controller, err = probes.Start(ctx, r.env.Client, r.env.Ingress.Namespace); err != nil {
		return err
	}
	r.undo = append(r.undo, r.controller.Stop)
	return nil
}

// takeSlot holds the run's share of the load slots until it ends.
func (r *run) takeSlot(ctx context.Context) error {
	if r.env.LoadSlots == nil {
		return nil
	}
	step := r.env.Log.Start("waiting for a load slot")
	release, err := r.env.LoadSlots.Acquire(ctx, r.s.LoadCost())
	if err != nil {
		return step.Fail(notJudged{fmt.Errorf("waiting for a load slot: %w", err)})
	}
	r.undo = append(r.undo, release)
	step.Done()
	return nil
}

// favour lets the load generator run first until the load stops
// (Env.Favour), undone at the end of disrupt or on any way out.
func (r *run) favour(context.Context) error {
	if r.env.Favour != nil {
		r.unfavour = r.env.Favour()
		r.undo = append(r.undo, r.endFavour)
	}
	return nil
}

// endFavour undoes favour, once.
func (r *run) endFavour() {
	if r.unfavour != nil {
		r.unfavour()
		r.unfavour = nil
	}
}

// calibrate runs the loads with nothing happening (Calibrate), at lower
// rates while the machine does not hold them and Scenario.MinRate allows.
func (r *run) calibrate(ctx context.Context) error { return r.calibrateWith(ctx, r.send()) }

func (r *run) calibrateWith(ctx context.Context, send SendFunc) error {
	for {
		calibration, err := Calibrate(ctx, r.s.calibrateFor(), r.env.Log, send, r.cfgs...)
		for i, c := range calibration {
			r.res.Traffic[i].Calibration = c
		}
		if !errors.Is(err, errMachineBusy) || ctx.Err() != nil || !r.lowerRate(calibration[0].Generator) {
			return err
		}
	}
}

// lowerRate halves every load's rate, when the first stays at
// Scenario.MinRate or above, and says why in the result: g, the
// calibration's generator, found the machine's CPU taken.
func (r *run) lowerRate(g loadgen.Generator) bool {
	from := r.cfgs[0].Rate
	if r.s.MinRate <= 0 || from/2 < r.s.MinRate {
		return false
	}
	for i := range r.cfgs {
		r.cfgs[i].Rate = max(1, r.cfgs[i].Rate/2)
	}
	r.res.EarlierAttempts = append(r.res.EarlierAttempts, fmt.Sprintf("at %d rps, with nothing happening, some task waited for a CPU %.0f%% of the calibration (nodrop used %.0f%% of a CPU%s): the load lowered to %d rps to fit the machine",
		from, 100*g.CPUPressure, 100*g.CPU, busiest("; the busiest: ", g.Busiest), r.cfgs[0].Rate))
	r.env.Log.Printf("• the machine does not hold %d rps beside what it runs: calibrating again at %d rps (no lower than %d)", from, r.cfgs[0].Rate, r.s.MinRate)
	return true
}

// disrupt is the run proper: the loads start, the disruption is triggered
// once the first load sent half a second's worth, and the loads go on
// until the disruption settled and the tail has passed. The window ends
// when sending stops; what was in flight then still finishes and is
// judged.
func (r *run) disrupt(ctx context.Context) error {
	var names []string
	for _, t := range r.s.Traffic {
		names = append(names, t.Load.Name)
	}
	from := ""
	if g := r.env.Generators; g != nil {
		from = ", from " + g.Where()
	}
	step := r.env.Log.Start("%s under %d rps, %s%s", r.s.What(), r.cfgs[0].Rate, strings.Join(names, " + "), from)
	r.followNewConns(ctx)
	loads := make([]*background, len(r.cfgs))
	for i, cfg := range r.cfgs {
		loads[i] = startLoad(ctx, r.send(), cfg)
	}
	first := loads[0]
	first.WaitSent(ctx, r.cfgs[0].Rate/2)
	if err := r.trigger(ctx); err != nil {
		for _, l := range loads {
			l.Stop()
		}
		return step.Fail(err)
	}
	r.res.Took = r.window.Settled.Sub(r.window.Trigger)
	// The tail: kube-proxy catches up (DataPlaneLag), losses from the
	// last old pod's exit show, and after that nothing may be lost.
	first.WaitSent(ctx, first.Sent()+int(r.s.tailFor().Seconds()*float64(r.cfgs[0].Rate)))
	r.window.End = time.Now()
	r.reports = make([]*loadgen.Report, len(loads))
	errs := make([]error, len(loads))
	for i, l := range loads {
		r.reports[i], errs[i] = l.Stop()
	}
	r.endFavour()
	if err := errors.Join(errs...); err != nil {
		return step.Fail(err)
	}
	step.Done(fmt.Sprintf("settled in %s", r.res.Took.Round(100*time.Millisecond)))
	return nil
}

// trigger does the disruption, places its faults, and waits until the
// disruption settled and every fault is undone.
func (r *run) trigger(ctx context.Context) error {
	r.window = Window{Trigger: time.Now()}
	r.rec.Record(probes.Event{At: r.window.Trigger, Kind: probes.Disruption, Detail: r.s.Disruption.Name})
	chaos := startFaults(ctx, r.live, r.window.Trigger, r.s.Faults)
	r.cleanups = append(r.cleanups, chaos.end)
	if err := chaos.placed(); err != nil {
		return faultFailed(ctx, err)
	}
	if err := r.s.Disruption.Apply(ctx, r.live); err != nil {
		return fmt.Errorf("%s: %w", r.s.Disruption.Name, err)
	}
	settled := r.s.Disruption.Settled
	if settled == nil {
		settled = func(ctx context.Context, l *Live) error {
			return kube.WaitAvailable(ctx, r.env.Client, r.ns, l.Deployment, r.env.Timeouts.Rollout, r.env.Timeouts)
		}
	}
	if err := settled(ctx, r.live); err != nil {
		if errors.Is(err, kube.ErrStuck) {
			err = badInput{err}
		}
		return fmt.Errorf("%s: %w", r.s.Disruption.Name, err)
	}
	// A fault may outlast the rollout (kube-proxy still paused): the
	// cluster has settled only when it is undone.
	if err := chaos.wait(); err != nil {
		return faultFailed(ctx, err)
	}
	r.window.Settled = time.Now()
	return nil
}

// followNewConns watches, on the nodes, the new connections of each
// kept-alive HTTP load through a NodePort: they explain refusals.
func (r *run) followNewConns(ctx context.Context) {
	r.watches = make([]*newConnWatch, len(r.cfgs))
	if r.env.Nodes == nil || r.env.URL != "" || r.env.Generators != nil {
		return
	}
	for i, cfg := range r.cfgs {
		if l := r.s.Traffic[i].Load; l.Fresh || l.Connections > 0 || !l.SpeaksHTTP() {
			continue
		}
		w, err := watchNewConns(ctx, r.env.Nodes, nodePort(cfg.Targets[0]), fmt.Sprintf("%s-%d", r.ns, i))
		if err != nil {
			r.env.Log.Printf("not following new connections (they only explain refusals): %v", err)
			continue
		}
		r.watches[i] = w
		r.undo = append(r.undo, func() { _, _ = w.stop(context.WithoutCancel(ctx)) })
	}
}

// trace puts on the timeline what the nodes saw of the loads' connections
// (new ones followed live, attempts nobody answered) and the ingress
// controller's events during the run.
func (r *run) trace(ctx context.Context) error {
	// The nodes' conntrack knows nodrop's own connections by its client
	// ports; generators in pods are known by theirs, on their nodes.
	if r.env.Nodes != nil && r.env.URL == "" && r.env.Generators == nil {
		rest := slices.Clone(r.reports)
		for i, w := range r.watches {
			if w == nil {
				continue
			}
			conns, err := w.stop(ctx)
			if err != nil {
				r.env.Log.Printf("%v", err)
				continue
			}
			for _, e := range traceNewConns(conns, r.rec, r.reports[i], len(w.pids) > 1) {
				r.rec.Record(e)
			}
			rest[i] = nil // followed live: nothing to look up
		}
		for _, e := range traceUnanswered(ctx, r.env.Nodes, r.rec, rest) {
			r.rec.Record(e)
		}
	}
	if r.controller != nil {
		for _, e := range r.controller.Events() {
			if !e.At.Before(r.controllerFrom) {
				r.rec.Record(e)
			}
		}
	}
	return nil
}

// judge judges each load against its expectation, on the run's whole
// timeline; an interrupted run is not judged whatever it showed.
func (r *run) judge(ctx context.Context) error {
	r.res.Window, r.res.Events = r.window, withGoAways(r.rec.Events(), r.reports)
	for i, rep := range r.reports {
		r.res.Traffic[i].Report = rep
		r.res.Traffic[i].Outcome = Judge(rep, r.res.Events, r.window, r.s.Traffic[i].Expect)
	}
	if ctx.Err() != nil {
		return notJudged{fmt.Errorf("interrupted during the disruption: %w", context.Cause(ctx))}
	}
	return nil
}

// verify runs the scenario's checks: a claim that does not hold is a
// problem of every load of the run.
func (r *run) verify(ctx context.Context) error {
	for _, c := range r.s.Checks {
		cerr := c.Verify(ctx, r.live, r.res)
		if cerr == nil {
			continue
		}
		if ctx.Err() != nil {
			return notJudged{fmt.Errorf("interrupted checking %s: %w", c.Name, context.Cause(ctx))}
		}
		for i := range r.res.Traffic {
			o := &r.res.Traffic[i].Outcome
			o.Problems = append(o.Problems, fmt.Sprintf("%s: %v", c.Name, cerr))
		}
	}
	return nil
}

// deploy creates the objects (and the NodePort Service nodrop adds, if
// any) and waits until the Deployment is available.
func (r *run) deploy(ctx context.Context) error {
	s, env, ns, t, res := r.s, r.env, r.ns, r.target, r.res
	objs := s.Objects
	if t.Added != nil {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t.Added)
		if err != nil {
			return err
		}
		objs = append(append([]*unstructured.Unstructured{}, objs...), &unstructured.Unstructured{Object: u})
		res.Added = append(res.Added, fmt.Sprintf("Service %s (NodePort, same selector and port as %s, so load can reach it from outside the cluster)", t.Added.Name, t.Service.Name))
	}
	if s.Target.Ingress {
		ing := t.ingressFor(ns, env.Ingress)
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ing)
		if err != nil {
			return err
		}
		objs = append(append([]*unstructured.Unstructured{}, objs...), &unstructured.Unstructured{Object: u})
		res.Added = append(res.Added, fmt.Sprintf("Ingress %s (class %s, host %s → Service %s port %d), so load goes through %s",
			ing.Name, env.Ingress.Class, ing.Spec.Rules[0].Host, t.Service.Name, t.Port.Port, env.Ingress.Name))
	}
	step := env.Log.Start("deploying %d objects, waiting for deployment %s", len(objs), t.Deployment.Name)
	if err := r.creator.Create(ctx, ns, objs); err != nil {
		return step.Fail(badInput{err})
	}
	if err := kube.WaitAvailable(ctx, env.Client, ns, t.Deployment.Name, env.Timeouts.Available, env.Timeouts); err != nil {
		if errors.Is(err, kube.ErrStuck) {
			return step.Fail(badInput{err})
		}
		if ctx.Err() == nil {
			err = badInput{fmt.Errorf("%w%s", err, notReadyWhy(ctx, env.Client, ns))}
		}
		return step.Fail(err)
	}
	if f := t.Front; f != nil {
		// The proxy in front must serve before load goes through it.
		if err := kube.WaitAvailable(ctx, env.Client, ns, f.Name, env.Timeouts.Available, env.Timeouts); err != nil {
			if errors.Is(err, kube.ErrStuck) || ctx.Err() == nil {
				err = badInput{fmt.Errorf("deployment %s in front: %w", f.Name, err)}
			}
			return step.Fail(err)
		}
	}
	step.Done()
	return nil
}

// url is where a traffic's load goes: env.URL, or a node port of the
// Service (the added one when the user's has none) at env.NodeIP; from a
// pod (inCluster), the Service's ClusterIP and port.
func (s Scenario) url(ctx context.Context, env Env, ns string, t *Resolved, tr Traffic, inCluster bool) (string, error) {
	path := tr.Path
	if path == "" {
		path = "/"
	}
	if env.URL != "" && tr.Port == "" {
		return strings.TrimSuffix(env.URL, "/") + path, nil
	}
	sp := s.servicePort(env, ns, t, tr, inCluster)
	if inCluster && tr.Load.Balancer != "" && !sp.ingress {
		return tr.Load.Target(serviceName(ns, t, tr), path), nil
	}
	if inCluster {
		addr, err := kube.ClusterAddressOf(ctx, env.Client, sp.ns, sp.name, sp.what, sp.match)
		return tr.Load.Target(addr, path), sp.wrap(err)
	}
	np, err := kube.NodePortOf(ctx, env.Client, sp.ns, sp.name, sp.what, sp.match)
	return tr.Load.Target(env.NodeIP+":"+strconv.Itoa(int(np)), path), sp.wrap(err)
}

// serviceName is the DNS name and port a client that balances itself
// dials: the user's Service by name, resolved in the cluster; for a
// headless Service, whose name answers with the pods' addresses, the
// pods' port.
func serviceName(ns string, t *Resolved, tr Traffic) string {
	port := t.Port
	for _, p := range t.Service.Spec.Ports {
		if tr.Port != "" && p.Name == tr.Port {
			port = p
		}
	}
	n := port.Port
	if t.Service.Spec.ClusterIP == corev1.ClusterIPNone {
		n = targetPortNumber(port, served(t.Deployment, t.Front))
	}
	return net.JoinHostPort(t.Service.Name+"."+ns+".svc", strconv.Itoa(int(n)))
}

// servicePort is the port of a Service a traffic's load goes to.
type servicePort struct {
	ns, name string
	what     string // the port, as the user named it
	match    func(corev1.ServicePort) bool
	ingress  bool
}

func (sp servicePort) wrap(err error) error {
	if err != nil && sp.ingress {
		return fmt.Errorf("the ingress controller: %w", err)
	}
	return err
}

// servicePort is the Service port a traffic's load goes to: the ingress
// controller's, or the port of the target Service. The added Service
// stands in for the user's where theirs has no node port; a pod in the
// cluster reaches the user's own ClusterIP, as their clients do (its
// traffic policies apply), unless it is headless and has none.
func (s Scenario) servicePort(env Env, ns string, t *Resolved, tr Traffic, inCluster bool) servicePort {
	if s.Target.Ingress && tr.Port == "" {
		c := env.Ingress
		return servicePort{ns: c.Namespace, name: c.Service, what: c.Port, ingress: true, match: func(p corev1.ServicePort) bool { return p.Name == c.Port }}
	}
	added := t.Added != nil && (!inCluster || t.Service.Spec.ClusterIP == corev1.ClusterIPNone) &&
		(tr.Port == "" || slices.ContainsFunc(t.Added.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == tr.Port }))
	sp := servicePort{ns: ns, name: t.Service.Name, what: tr.Port}
	if added {
		sp.name = t.Added.Name
	}
	if sp.what == "" {
		sp.what = strconv.Itoa(int(t.Port.Port))
	}
	sp.match = func(p corev1.ServicePort) bool {
		switch {
		case tr.Port != "":
			return p.Name == tr.Port
		case added:
			return p.Name == t.Added.Spec.Ports[0].Name
		}
		return p.Port == t.Port.Port
	}
	return sp
}

// notReadyWhy says which pods are not ready and the last events about
// them (failed probes, back-offs), for a Deployment that never became
// available.
func notReadyWhy(ctx context.Context, c kubernetes.Interface, ns string) string {
	pods, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return ""
	}
	events, _ := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	var b strings.Builder
	for _, p := range pods.Items {
		if kube.PodReady(&p) {
			continue
		}
		fmt.Fprintf(&b, "; pod %s not ready (%s)", p.Name, p.Status.Phase)
		if events == nil {
			continue
		}
		last := ""
		for _, e := range events.Items {
			if e.InvolvedObject.Name == p.Name && e.Type == corev1.EventTypeWarning {
				last = e.Reason + ": " + e.Message
			}
		}
		if last != "" {
			b.WriteString(": " + strings.TrimSpace(last))
		}
	}
	return b.String()
}

// goAwayGroup joins the GOAWAYs one pod sent the clients within it into
// one timeline line: a server's graceful stop tells every connection at
// once.
const goAwayGroup = 200 * time.Millisecond

// withGoAways is events with the GOAWAYs the loads' clients got placed
// among them (probes.GoAway): one line per pod and moment, saying on how
// many connections.
func withGoAways(events []probes.Event, reports []*loadgen.Report) []probes.Event {
	type group struct {
		at  time.Time
		pod string
		n   int
	}
	var groups []group
	for _, rep := range reports {
		if rep == nil {
			continue
		}
		latest := map[string]int{} // by pod: its latest group
		for _, g := range rep.GoAways {
			if i, ok := latest[g.Pod]; ok && g.At.Sub(groups[i].at) <= goAwayGroup {
				groups[i].n++
				continue
			}
			latest[g.Pod] = len(groups)
			groups = append(groups, group{at: g.At, pod: g.Pod, n: 1})
		}
	}
	if len(groups) == 0 {
		return events
	}
	out := slices.Clone(events)
	for _, g := range groups {
		detail := fmt.Sprintf("on %d connections", g.n)
		if g.n == 1 {
			detail = "on 1 connection"
		}
		out = append(out, probes.Event{At: g.at, Kind: probes.GoAway, Pod: g.pod, Detail: detail})
	}
	slices.SortStableFunc(out, func(a, b probes.Event) int { return a.At.Compare(b.At) })
	return out
}

// faultFailed is what a run says when a fault failed: not judged, bad
// input if the fault's request was, or interrupted.
func faultFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return notJudged{fmt.Errorf("interrupted during the disruption: %w", context.Cause(ctx))}
	}
	if errors.Is(err, ErrBadInput) {
		return err
	}
	return notJudged{err}
}

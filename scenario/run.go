package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// ErrNotJudged marks a run whose verdict could not be decided: the load
// was not delivered, calibration lost requests before any disruption
// (the set-up is broken), or the run was interrupted. It is never a pass.
var ErrNotJudged = errors.New("not judged")

type notJudged struct{ error }

func (notJudged) Is(target error) bool { return target == ErrNotJudged }
func (e notJudged) Unwrap() error      { return e.error }

// Defaults of a scenario's phases.
const (
	// CalibrateFor is how long the load runs with nothing happening
	// before the disruption.
	CalibrateFor = 3 * time.Second
	// TailFor is how long load goes on after the disruption settled: the
	// data plane's lag, then a second in which nothing may be lost.
	TailFor = DataPlaneLag + time.Second
)

// Env is where a scenario runs: any cluster, passed explicitly.
type Env struct {
	Client kubernetes.Interface
	REST   *rest.Config
	// NodeIP is an address at which the cluster's NodePorts answer.
	NodeIP string
	// URL, when set, is where load goes instead of a NodePort at NodeIP
	// (the user's own route to the Service).
	URL      string
	Timeouts kube.Timeouts
	// Log gets one line per phase; nil is silent.
	Log *progress.Logger
	// Dump gets the namespace's pods, events and logs when a run fails
	// or loses requests it should not; nil for none.
	Dump io.Writer
	// Keep leaves the namespace in place after the run.
	Keep bool
	// Nodes, when set, runs commands on the cluster's nodes, which some
	// faults need (kube-proxy paused, a container killed).
	Nodes NodeShell
	// LoadSlots, when set, is held from calibration until the load
	// stops: runs that share it send load a bounded number at a time,
	// while their deploys, waits and teardowns overlap.
	LoadSlots Slots
	// Ingress is the cluster's ingress controller, for scenarios whose
	// load goes through one (Target.Ingress); nil when it has none.
	Ingress *IngressController
	// HelperProgram, when set, is a program that runs nodrop's helper
	// processes (it calls nfqueue.Helper first thing: nodrop's binary,
	// the suites' test binary), normally this one: the delay faults hold
	// packets there, apart from the load generator. Empty: in this
	// process.
	HelperProgram string
	// Witness, when set, watches the machine from a process of its own,
	// so each stall of the load generator says whether the whole machine
	// stood still or nodrop alone (loadgen.Config.Witness).
	Witness loadgen.Witness
	// OnStall, when set, hears of each stall of the load generator
	// (loadgen.Config.OnStall: the trace around it kept, internal/flight).
	OnStall func(loadgen.Stall)
}

// Slots bound how much load runs send at once (internal/slots shares
// them between processes): a run takes as many as its LoadCost.
type Slots interface {
	Acquire(ctx context.Context, k int) (release func(), err error)
}

// Scenario is one run: objects deployed into a fresh namespace, load
// through their Service, one disruption, each load judged against what
// the configuration claims for it.
type Scenario struct {
	// Name is the configuration, as summaries name it.
	Name string
	// Objects are created in order in the run's namespace (whatever
	// namespace they name).
	Objects []*unstructured.Unstructured
	Target  Target
	// NamespacePrefix starts the generated namespace's name.
	NamespacePrefix string
	// PodSecurity is the Pod Security Standard level the namespace
	// enforces (kube.PodSecurity*; none when empty).
	PodSecurity string
	// Setup, when set, runs in the fresh namespace before the objects
	// are created (e.g. a SidecarSet that injects into their pods); its
	// cleanup runs before the namespace is deleted.
	Setup func(ctx context.Context, l *Live) (cleanup func(context.Context) error, err error)
	// Traffic is the load, all of it at once; each is judged on its own.
	Traffic []Traffic
	// Disruption is done under load.
	Disruption Disruption
	// Faults are chaos injected while the disruption runs.
	Faults []Fault
	// Checks are claims about the run beyond its loads' verdicts (the
	// container restarted or did not, v2 answered, the pod stayed
	// Ready), checked after the load stops and before the namespace
	// goes. A failed check is a problem of every load of the run: the
	// run did not show what the configuration claims.
	Checks []Check
	// Calibrate and Tail default to CalibrateFor and TailFor.
	Calibrate, Tail time.Duration
}

// Check is one claim about a finished run.
type Check struct {
	// Name says what is claimed, as a problem names it.
	Name string
	// Verify returns why the claim does not hold, or nil.
	Verify func(ctx context.Context, l *Live, res *Result) error
}

// Traffic is one kind of load of a scenario and what it must show.
type Traffic struct {
	// Name is how summaries name the load (keepalive, fresh, long-lived RPC).
	Name string
	// Port is the Service port it goes to, by name ("" for the target's).
	Port string
	// RPC sends nodrop's RPC protocol (rpc://host:port) instead of HTTP.
	RPC bool
	// Path of HTTP requests ("/" when empty).
	Path string
	// Config is the load; Run fills in its target.
	Config loadgen.Config
	Expect Expectation
}

// Live is a running scenario, as its set-up and disruption see it.
type Live struct {
	Env        Env
	Namespace  string
	Deployment string
	Recorder   *probes.Recorder
}

// Pods are the Deployment's pods, terminating ones included.
func (l *Live) Pods(ctx context.Context) ([]corev1.Pod, error) {
	d, err := l.Env.Client.AppsV1().Deployments(l.Namespace).Get(ctx, l.Deployment, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return kube.PodsOf(ctx, l.Env.Client, d)
}

// What names what the run does: the disruption and its faults, or the
// faults alone when the disruption leaves the Deployment alone.
func (s Scenario) What() string {
	parts := []string{s.Disruption.Name}
	if s.Disruption.Name == kube.Nothing.Name && len(s.Faults) > 0 {
		parts = nil
	}
	for _, f := range s.Faults {
		parts = append(parts, f.Name)
	}
	return strings.Join(parts, ", ")
}

// replicas is how many pods the Deployment asks for.
func (l *Live) replicas(ctx context.Context) (int, error) {
	d, err := l.Env.Client.AppsV1().Deployments(l.Namespace).Get(ctx, l.Deployment, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if d.Spec.Replicas == nil {
		return 1, nil
	}
	return int(*d.Spec.Replicas), nil
}

// Disruption is what a run does under load.
type Disruption struct {
	Name string
	// Apply does it.
	Apply func(ctx context.Context, l *Live) error
	// Settled waits until it is over; nil waits until the Deployment is
	// rolled out with every old pod gone.
	Settled func(ctx context.Context, l *Live) error
}

// Rollout is a disruption of the Deployment (a restart, an image change,
// a scale-down, a pod's deletion), settled when every old pod is gone.
func Rollout(d kube.Disruption) Disruption {
	return Disruption{Name: d.Name, Apply: func(ctx context.Context, l *Live) error {
		dep, err := l.Env.Client.AppsV1().Deployments(l.Namespace).Get(ctx, l.Deployment, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading deployment: %w", err)
		}
		return d.Apply(ctx, l.Env.Client, dep)
	}}
}

// Result is what a run found; a run that ended early holds what it got to.
type Result struct {
	Scenario   string `json:"scenario"`
	Disruption string `json:"disruption"`
	Namespace  string `json:"namespace"`
	// Added names what nodrop added beside the user's objects.
	Added   []string        `json:"added,omitempty"`
	Traffic []TrafficResult `json:"traffic"`
	Events  []probes.Event  `json:"events,omitempty"`
	Window  Window          `json:"window"`
	// Took is the disruption, from its trigger until it settled.
	Took time.Duration `json:"took_ns"`
	// EarlierAttempts say why the runs before this one were not judged
	// (RunUntilJudged); none when this was the first.
	EarlierAttempts []string `json:"not_judged_before,omitempty"`
}

// TrafficResult is one load's part of a run.
type TrafficResult struct {
	Name        string          `json:"name"`
	URL         string          `json:"url"`
	Calibration *loadgen.Report `json:"calibration,omitempty"`
	Report      *loadgen.Report `json:"report,omitempty"`
	Outcome     Outcome         `json:"outcome"`
	// Expect is what it was judged against.
	Expect Expectation `json:"-"`
}

// Judged reports whether every load reached its verdict.
func (r *Result) Judged() bool {
	for _, t := range r.Traffic {
		if t.Report == nil {
			return false
		}
	}
	return len(r.Traffic) > 0
}

// Passed reports whether every load was judged and showed what it must.
func (r *Result) Passed() bool {
	if !r.Judged() {
		return false
	}
	for _, t := range r.Traffic {
		if !t.Outcome.Passed() {
			return false
		}
	}
	return true
}

// Rows are the judged loads as summary lines.
func (r *Result) Rows() []Row {
	var rows []Row
	for _, t := range r.Traffic {
		if t.Report != nil {
			row := NewRow(r.Scenario, r.Disruption, t.Name, t.Report, t.Outcome, r.Took.Seconds())
			row.EarlierAttempts = r.EarlierAttempts
			rows = append(rows, row)
		}
	}
	return rows
}

// Evidence is what a failed or lossy load prints: the mechanism claimed,
// the report, the losses next to what happened then, and the timeline.
func (r *Result) Evidence(t TrafficResult) string { return Evidence(t.Report, r.Events, t.Expect) }

// Evidence is the mechanism, the report, the losses explained and the
// timeline of one run.
func Evidence(r *loadgen.Report, events []probes.Event, e Expectation) string {
	var b strings.Builder
	if e.Why != "" {
		b.WriteString("\n" + e.Why + "\n")
	}
	if len(e.Classes) > 0 {
		b.WriteString("classes of the mechanism:\n" + e.Reasons())
	}
	r.WriteTable(&b)
	b.WriteString("\nlosses:\n" + probes.Explain(r, events) + "timeline:\n" + probes.Timeline(r, events))
	return b.String()
}

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
	res = &Result{Scenario: s.Name, Disruption: s.What()}
	for _, t := range s.Traffic {
		res.Traffic = append(res.Traffic, TrafficResult{Name: t.Name, Expect: t.Expect})
	}
	target, err := Resolve(s.Objects, s.Target)
	if err != nil {
		return res, err
	}
	if s.Disruption.Apply == nil || len(s.Traffic) == 0 {
		return res, badInputf("scenario %s needs load and a disruption", s.Name)
	}
	if s.Target.Ingress && env.Ingress == nil {
		return res, badInputf("load through an ingress needs nodrop's ingress controller on the cluster (nodrop cluster up --with-ingress)")
	}
	for _, f := range s.Faults {
		if f.NeedsNodes && env.Nodes == nil {
			return res, badInputf("fault %s runs commands on the nodes, which nodrop can do only on a kind cluster it knows (nodrop cluster up)", f.Name)
		}
	}
	creator, err := kube.NewCreator(env.REST)
	if err != nil {
		return res, err
	}
	prefix := s.NamespacePrefix
	if prefix == "" {
		prefix = "nodrop"
	}
	ns, err := kube.CreateNamespace(ctx, env.Client, prefix, s.PodSecurity)
	if err != nil {
		return res, err
	}
	res.Namespace = ns
	env.Log.Printf("• namespace %s", ns)
	rec, err := probes.Start(ctx, env.Client, ns)
	if err != nil {
		_ = kube.DeleteNamespace(context.WithoutCancel(ctx), env.Client, ns, env.Timeouts)
		return res, err
	}
	live := &Live{Env: env, Namespace: ns, Deployment: target.Deployment.Name, Recorder: rec}
	var cleanups []func(context.Context) error
	defer func() {
		rec.Stop()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if env.Dump != nil && (err != nil || !res.Passed()) {
			kube.Dump(cctx, env.Client, ns, env.Dump)
		}
		for _, c := range cleanups {
			err = errors.Join(err, c(cctx))
		}
		if env.Keep {
			if derr := kube.Disown(cctx, env.Client, ns); derr != nil {
				err = errors.Join(err, derr)
			}
			env.Log.Printf("• kept namespace %s (--keep)", ns)
			return
		}
		step := env.Log.Start("deleting namespace %s", ns)
		if derr := kube.DeleteNamespace(cctx, env.Client, ns, env.Timeouts); derr != nil {
			err = errors.Join(err, step.Fail(derr))
			return
		}
		step.Done()
	}()
	if s.Setup != nil {
		cleanup, err := s.Setup(ctx, live)
		if cleanup != nil {
			cleanups = append(cleanups, cleanup)
		}
		if err != nil {
			return res, fmt.Errorf("setting up: %w", err)
		}
	}

	if err := s.deploy(ctx, env, creator, ns, target, res); err != nil {
		return res, err
	}
	cfgs := make([]loadgen.Config, len(s.Traffic))
	host := ""
	for i, t := range s.Traffic {
		url, err := s.url(ctx, env, ns, target, t)
		if err != nil {
			return res, err
		}
		res.Traffic[i].URL = url
		cfgs[i] = t.Config
		cfgs[i].Targets = []string{url}
		if cfgs[i].Witness == nil {
			cfgs[i].Witness = env.Witness
		}
		if cfgs[i].OnStall == nil {
			cfgs[i].OnStall = env.OnStall
		}
		if s.Target.Ingress && t.Port == "" {
			// The controller routes by host: the run's Ingress names one.
			host = IngressHost(ns)
			cfgs[i].Header = cfgs[i].Header.Clone()
			if cfgs[i].Header == nil {
				cfgs[i].Header = http.Header{}
			}
			cfgs[i].Header.Set("Host", host)
		}
	}
	if url := res.Traffic[0].URL; !s.Traffic[0].RPC {
		what := url
		if host != "" {
			what = fmt.Sprintf("%s (host %s)", url, host)
		}
		step := env.Log.Start("waiting for %s to serve", what)
		if err := kube.WaitServing(ctx, url, host, env.Timeouts); err != nil {
			return res, step.Fail(badInput{err})
		}
		step.Done()
	}
	var controller *probes.Recorder
	var controllerFrom time.Time
	if s.Target.Ingress {
		stop, err := followIngress(ctx, env, ns, target, rec)
		if err != nil {
			return res, err
		}
		defer stop()
		// The controller's own pods go on the timeline too: a rollout
		// of the controller is a disruption of the run's. Only what
		// happens from now on: the recorder starts with the namespace's
		// whole event history, which is not this run's.
		controllerFrom = time.Now()
		if controller, err = probes.Start(ctx, env.Client, env.Ingress.Namespace); err != nil {
			return res, err
		}
		defer controller.Stop()
	}
	if env.LoadSlots != nil {
		step := env.Log.Start("waiting for a load slot")
		release, err := env.LoadSlots.Acquire(ctx, s.LoadCost())
		if err != nil {
			return res, step.Fail(notJudged{fmt.Errorf("waiting for a load slot: %w", err)})
		}
		defer release()
		step.Done()
	}
	calibration, err := Calibrate(ctx, s.calibrateFor(), env.Log, cfgs...)
	for i, r := range calibration {
		res.Traffic[i].Calibration = r
	}
	if err != nil {
		return res, err
	}

	var names []string
	for _, t := range s.Traffic {
		names = append(names, t.Name)
	}
	step := env.Log.Start("%s under %d rps, %s", s.What(), cfgs[0].Rate, strings.Join(names, " + "))
	watches := make([]*newConnWatch, len(cfgs))
	if env.Nodes != nil && env.URL == "" {
		for i, cfg := range cfgs {
			if cfg.DisableKeepAlive || cfg.Connections > 0 || s.Traffic[i].RPC {
				continue
			}
			w, err := watchNewConns(ctx, env.Nodes, nodePort(cfg.Targets[0]), fmt.Sprintf("%s-%d", ns, i))
			if err != nil {
				env.Log.Printf("not following new connections (they only explain refusals): %v", err)
				continue
			}
			watches[i] = w
			defer w.stop(context.WithoutCancel(ctx))
		}
	}
	loads := make([]*background, len(cfgs))
	for i, cfg := range cfgs {
		loads[i] = startLoad(ctx, cfg)
	}
	stopAll := func() {
		for _, l := range loads {
			l.Stop()
		}
	}
	first := loads[0]
	first.WaitSent(ctx, cfgs[0].Rate/2)
	w := Window{Trigger: time.Now()}
	rec.Record(probes.Event{At: w.Trigger, Kind: probes.Disruption, Detail: s.Disruption.Name})
	chaos := startFaults(ctx, live, w.Trigger, s.Faults)
	cleanups = append(cleanups, chaos.end)
	if err := chaos.placed(); err != nil {
		stopAll()
		return res, step.Fail(faultFailed(ctx, err))
	}
	if err := s.Disruption.Apply(ctx, live); err != nil {
		stopAll()
		return res, step.Fail(fmt.Errorf("%s: %w", s.Disruption.Name, err))
	}
	settled := s.Disruption.Settled
	if settled == nil {
		settled = func(ctx context.Context, l *Live) error {
			return kube.WaitAvailable(ctx, env.Client, ns, l.Deployment, env.Timeouts.Rollout, env.Timeouts)
		}
	}
	if err := settled(ctx, live); err != nil {
		stopAll()
		if errors.Is(err, kube.ErrStuck) {
			err = badInput{err}
		}
		return res, step.Fail(fmt.Errorf("%s: %w", s.Disruption.Name, err))
	}
	// A fault may outlast the rollout (kube-proxy still paused): the
	// cluster has settled only when it is undone.
	if err := chaos.wait(); err != nil {
		stopAll()
		return res, step.Fail(faultFailed(ctx, err))
	}
	w.Settled = time.Now()
	res.Took = w.Settled.Sub(w.Trigger)
	// The tail: kube-proxy catches up (DataPlaneLag), losses from the
	// last old pod's exit show, and after that nothing may be lost.
	first.WaitSent(ctx, first.Sent()+int(s.tailFor().Seconds()*float64(cfgs[0].Rate)))
	// The window ends when sending stops; what was in flight then still
	// finishes and is judged.
	w.End = time.Now()
	reports, errs := make([]*loadgen.Report, len(loads)), make([]error, len(loads))
	for i, l := range loads {
		reports[i], errs[i] = l.Stop()
	}
	if err := errors.Join(errs...); err != nil {
		return res, step.Fail(err)
	}
	step.Done(fmt.Sprintf("settled in %s", res.Took.Round(100*time.Millisecond)))
	if env.Nodes != nil && env.URL == "" {
		rest := slices.Clone(reports)
		for i, w := range watches {
			if w == nil {
				continue
			}
			conns, err := w.stop(ctx)
			if err != nil {
				env.Log.Printf("%v", err)
				continue
			}
			for _, e := range traceNewConns(conns, rec, reports[i], len(w.pids) > 1) {
				rec.Record(e)
			}
			rest[i] = nil // followed live: nothing to look up
		}
		for _, e := range traceUnanswered(ctx, env.Nodes, rec, rest) {
			rec.Record(e)
		}
	}
	if controller != nil {
		for _, e := range controller.Events() {
			if !e.At.Before(controllerFrom) {
				rec.Record(e)
			}
		}
	}
	res.Window, res.Events = w, rec.Events()
	for i, r := range reports {
		res.Traffic[i].Report = r
		res.Traffic[i].Outcome = Judge(r, res.Events, w, s.Traffic[i].Expect)
	}
	if ctx.Err() != nil {
		return res, notJudged{fmt.Errorf("interrupted during the disruption: %w", context.Cause(ctx))}
	}
	for _, c := range s.Checks {
		cerr := c.Verify(ctx, live, res)
		if cerr == nil {
			continue
		}
		if ctx.Err() != nil {
			return res, notJudged{fmt.Errorf("interrupted checking %s: %w", c.Name, context.Cause(ctx))}
		}
		for i := range res.Traffic {
			o := &res.Traffic[i].Outcome
			o.Problems = append(o.Problems, fmt.Sprintf("%s: %v", c.Name, cerr))
		}
	}
	return res, nil
}

// deploy creates the objects (and the NodePort Service nodrop adds, if
// any) and waits until the Deployment is available.
func (s Scenario) deploy(ctx context.Context, env Env, creator *kube.Creator, ns string, t *Resolved, res *Result) error {
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
	if err := creator.Create(ctx, ns, objs); err != nil {
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
// Service (the added one when the user's has none) at env.NodeIP.
func (s Scenario) url(ctx context.Context, env Env, ns string, t *Resolved, tr Traffic) (string, error) {
	path := tr.Path
	if path == "" {
		path = "/"
	}
	if env.URL != "" && tr.Port == "" {
		return strings.TrimSuffix(env.URL, "/") + path, nil
	}
	if s.Target.Ingress && tr.Port == "" {
		c := env.Ingress
		np, err := kube.NodePortOf(ctx, env.Client, c.Namespace, c.Service, c.Port, func(p corev1.ServicePort) bool { return p.Name == c.Port })
		if err != nil {
			return "", fmt.Errorf("the ingress controller: %w", err)
		}
		return "http://" + env.NodeIP + ":" + strconv.Itoa(int(np)) + path, nil
	}
	svc := t.Service.Name
	if t.Added != nil && tr.Port == "" {
		svc = t.Added.Name
	}
	port := tr.Port
	if port == "" {
		port = strconv.Itoa(int(t.Port.Port))
	}
	np, err := kube.NodePortOf(ctx, env.Client, ns, svc, port, func(p corev1.ServicePort) bool {
		if tr.Port != "" {
			return p.Name == tr.Port
		}
		return t.Added != nil || p.Port == t.Port.Port
	})
	if err != nil {
		return "", err
	}
	host := env.NodeIP + ":" + strconv.Itoa(int(np))
	if tr.RPC {
		return "rpc://" + host, nil
	}
	return "http://" + host + path, nil
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

func (s Scenario) calibrateFor() time.Duration {
	if s.Calibrate > 0 {
		return s.Calibrate
	}
	return CalibrateFor
}

func (s Scenario) tailFor() time.Duration {
	if s.Tail > 0 {
		return s.Tail
	}
	return TailFor
}

// Calibrate runs exactly the load a run will judge, every part of it at
// once, for d with nothing happening. Each part must be judged lossless
// by the same rule as the run (every request answered, the rate
// delivered with no gap, the generator on time), or the set-up is broken
// (wrong port, pods not serving, a saturated load generator) and nothing
// is judged: the error wraps ErrNotJudged.
func Calibrate(ctx context.Context, d time.Duration, log *progress.Logger, cfgs ...loadgen.Config) ([]*loadgen.Report, error) {
	step := log.Start("calibrating for %s: the same load with nothing happening must be delivered and lose nothing", d)
	reports := make([]*loadgen.Report, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		cfg.Duration = d
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i], errs[i] = loadgen.Run(ctx, cfg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return reports, step.Fail(err)
	}
	for _, r := range reports {
		if r.Verdict != loadgen.Lossless {
			var b strings.Builder
			r.WriteTable(&b)
			return reports, step.Fail(notJudged{fmt.Errorf("setup broken before any disruption, so nothing was judged: calibration was %s (%s)\n%s", r.Verdict, r.Summary(), b.String())})
		}
	}
	g := reports[0].Generator
	if g.CPUPressure >= MaxCalibrationPressure {
		return reports, step.Fail(notJudged{fmt.Errorf("the machine is too small for this load: with nothing happening, some task waited for a CPU %.0f%% of the calibration (nodrop used %.0f%% of a CPU at %d rps); a rollout on top of it would starve the pods or the generator, so nothing was judged: run at a lower rate, or on a larger machine",
			100*g.CPUPressure, 100*g.CPU, reports[0].RateTarget)})
	}
	if g.CPUPressure >= 0 {
		step.Done(fmt.Sprintf("machine CPU pressure %.0f%%, nodrop %.0f%% of a CPU", 100*g.CPUPressure, 100*g.CPU))
	} else {
		step.Done()
	}
	return reports, nil
}

// MaxCalibrationPressure is the CPU pressure (the share of the time in
// which some task of the machine waited for a CPU) above which the load
// alone, with nothing happening, is more than the machine holds. On two
// cores beside nodrop's kind cluster, 1,000 rps of fresh connections ran
// at 0–6 % (docs/stalls.md).
const MaxCalibrationPressure = 0.8

// background is load running in the background of a run.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
	report *loadgen.Report
	err    error
	count  chan int
	last   int
}

// startLoad starts cfg's load until Stop (or ctx's end).
func startLoad(ctx context.Context, cfg loadgen.Config) *background {
	loadCtx, cancel := context.WithCancel(ctx)
	l := &background{cancel: cancel, done: make(chan struct{}), count: make(chan int, 1)}
	cfg.Progress = func(p loadgen.Progress) {
		select {
		case <-l.count:
		default:
		}
		l.count <- p.Sent
	}
	go func() {
		defer close(l.done)
		l.report, l.err = loadgen.Run(loadCtx, cfg)
	}()
	return l
}

// Sent is the latest count of sent requests.
func (l *background) Sent() int {
	select {
	case n := <-l.count:
		l.last = n
	default:
	}
	return l.last
}

// WaitSent waits until at least n requests were sent (progress of the
// load itself, not a sleep), the load ended, or ctx is done.
func (l *background) WaitSent(ctx context.Context, n int) {
	for l.last < n {
		select {
		case l.last = <-l.count:
		case <-l.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

// Stop ends the load and returns its report.
func (l *background) Stop() (*loadgen.Report, error) {
	l.cancel()
	<-l.done
	return l.report, l.err
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

// LoadCost is how many load slots a run takes (Env.LoadSlots): one for
// each 1,000 rps of kept-alive load, two for fresh connections (one per
// request) and two for a hop through the ingress controller; the sum
// over the run's loads, rounded up, at least one. Measured on two cores
// with LOAD_SLOTS=2 in mind: a kept-alive run at 1,000 rps keeps ≈ 0.55
// core busy with the cluster's share of it, a fresh one ≈ 0.8 core (the
// handshakes, NAT and conntrack entries); two kept-alive runs at once
// kept every verdict, two fresh ones starved the load generator.
func (s Scenario) LoadCost() int {
	cost := 0.0
	for _, t := range s.Traffic {
		c := float64(max(t.Config.Rate, 1)) / 1000
		if t.Config.DisableKeepAlive && t.Config.Connections == 0 {
			c *= 2
		}
		if s.Target.Ingress {
			c *= 2
		}
		cost += c
	}
	return max(1, int(math.Ceil(cost-1e-9)))
}

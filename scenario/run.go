package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
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
}

// Scenario is one run: objects deployed into a fresh namespace, load
// through their Service, one disruption of their Deployment, judged
// against an expectation.
type Scenario struct {
	// Name is the configuration, as summaries name it.
	Name string
	// Objects are created in order in the run's namespace (whatever
	// namespace they name).
	Objects []*unstructured.Unstructured
	Target  Target
	// NamespacePrefix starts the generated namespace's name.
	NamespacePrefix string
	// Load is the load to judge; Run fills in its target. LoadName is how
	// summaries name it (keepalive, fresh).
	Load     loadgen.Config
	LoadName string
	// Disruption is done to the Deployment under load; the run waits
	// until it settled (every old pod gone).
	Disruption kube.Disruption
	Expect     Expectation
	// Calibrate and Tail default to CalibrateFor and TailFor.
	Calibrate, Tail time.Duration
}

// Result is what a run found; a run that ended early holds what it got to.
type Result struct {
	Scenario   string `json:"scenario"`
	Disruption string `json:"disruption"`
	Load       string `json:"load"`
	Namespace  string `json:"namespace"`
	URL        string `json:"url"`
	// Added names what nodrop added beside the user's objects.
	Added       []string          `json:"added,omitempty"`
	Calibration []*loadgen.Report `json:"calibration,omitempty"`
	Report      *loadgen.Report   `json:"report,omitempty"`
	Events      []probes.Event    `json:"events,omitempty"`
	Window      Window            `json:"window"`
	// Took is the disruption, from its trigger until it settled.
	Took    time.Duration `json:"took_ns"`
	Outcome Outcome       `json:"outcome"`
	// Expect is what the run was judged against.
	Expect Expectation `json:"-"`
}

// Row is the result as a summary line.
func (r *Result) Row() Row {
	return NewRow(r.Scenario, r.Disruption, r.Load, r.Report, r.Outcome, r.Took.Seconds())
}

// Evidence is what a failed or lossy run prints: the mechanism claimed,
// the report, the losses next to what happened then, and the timeline.
func (r *Result) Evidence() string { return Evidence(r.Report, r.Events, r.Expect) }

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
// every old pod is gone and the tail has passed, and judges the run. It
// deletes the namespace at the end (unless env.Keep), also when it fails
// or ctx is cancelled. The error wraps ErrBadInput when the scenario
// cannot run as given and ErrNotJudged when it ran but could not be
// judged; the result holds what the run got to.
func (s Scenario) Run(ctx context.Context, env Env) (res *Result, err error) {
	res = &Result{Scenario: s.Name, Disruption: s.Disruption.Name, Load: s.LoadName, Expect: s.Expect}
	target, err := Resolve(s.Objects, s.Target)
	if err != nil {
		return res, err
	}
	if s.Disruption.Apply == nil {
		return res, badInputf("scenario %s has no disruption", s.Name)
	}
	creator, err := kube.NewCreator(env.REST)
	if err != nil {
		return res, err
	}
	prefix := s.NamespacePrefix
	if prefix == "" {
		prefix = "nodrop"
	}
	ns, err := kube.CreateNamespace(ctx, env.Client, prefix)
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
	defer func() {
		rec.Stop()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if env.Dump != nil && (err != nil || !res.Outcome.Passed()) {
			kube.Dump(cctx, env.Client, ns, env.Dump)
		}
		if env.Keep {
			env.Log.Printf("• kept namespace %s (--keep)", ns)
			return
		}
		step := env.Log.Start("deleting namespace %s", ns)
		if derr := kube.DeleteNamespace(cctx, env.Client, ns, env.Timeouts); derr != nil {
			step.Fail(derr)
			err = errors.Join(err, derr)
			return
		}
		step.Done()
	}()

	res.URL, err = s.deploy(ctx, env, creator, ns, target, res)
	if err != nil {
		return res, err
	}
	cfg := s.Load
	cfg.Targets = []string{res.URL}
	res.Calibration, err = Calibrate(ctx, s.calibrateFor(), env.Log, cfg)
	if err != nil {
		return res, err
	}

	step := env.Log.Start("%s under %d rps, %s", s.Disruption.Name, cfg.Rate, s.LoadName)
	load := StartLoad(ctx, cfg)
	load.WaitSent(ctx, cfg.Rate/2)
	d, err := env.Client.AppsV1().Deployments(ns).Get(ctx, target.Deployment.Name, metav1.GetOptions{})
	if err != nil {
		load.Stop()
		return res, step.Fail(fmt.Errorf("reading deployment: %w", err))
	}
	w := Window{Trigger: time.Now()}
	rec.Record(probes.Event{At: w.Trigger, Kind: probes.Disruption, Detail: s.Disruption.Name})
	if err := s.Disruption.Apply(ctx, env.Client, d); err != nil {
		load.Stop()
		return res, step.Fail(err)
	}
	if err := kube.WaitAvailable(ctx, env.Client, ns, d.Name, env.Timeouts.Rollout, env.Timeouts); err != nil {
		load.Stop()
		if errors.Is(err, kube.ErrStuck) {
			err = badInput{err}
		}
		return res, step.Fail(fmt.Errorf("%s: %w", s.Disruption.Name, err))
	}
	w.Settled = time.Now()
	res.Took = w.Settled.Sub(w.Trigger)
	// The tail: kube-proxy catches up (DataPlaneLag), losses from the
	// last old pod's exit show, and after that nothing may be lost.
	load.WaitSent(ctx, load.Sent()+int(s.tailFor().Seconds()*float64(cfg.Rate)))
	// The window ends when sending stops; what was in flight then still
	// finishes and is judged.
	w.End = time.Now()
	r, err := load.Stop()
	if err != nil {
		return res, step.Fail(err)
	}
	step.Done(fmt.Sprintf("settled in %s", res.Took.Round(100*time.Millisecond)))
	res.Report, res.Window, res.Events = r, w, rec.Events()
	res.Outcome = Judge(r, res.Events, w, s.Expect)
	if ctx.Err() != nil {
		return res, notJudged{fmt.Errorf("interrupted during the disruption: %w", context.Cause(ctx))}
	}
	return res, nil
}

// deploy creates the objects (and the NodePort Service nodrop adds, if
// any), waits until the Deployment is available and its Service serves,
// and returns the URL load goes to.
func (s Scenario) deploy(ctx context.Context, env Env, creator *kube.Creator, ns string, t *Resolved, res *Result) (string, error) {
	objs := s.Objects
	if t.Added != nil {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(t.Added)
		if err != nil {
			return "", err
		}
		objs = append(append([]*unstructured.Unstructured{}, objs...), &unstructured.Unstructured{Object: u})
		res.Added = append(res.Added, fmt.Sprintf("Service %s (NodePort, same selector and port as %s, so load can reach it from outside the cluster)", t.Added.Name, t.Service.Name))
	}
	step := env.Log.Start("deploying %d objects, waiting for deployment %s", len(objs), t.Deployment.Name)
	if err := creator.Create(ctx, ns, objs); err != nil {
		return "", step.Fail(badInput{err})
	}
	if err := kube.WaitAvailable(ctx, env.Client, ns, t.Deployment.Name, env.Timeouts.Available, env.Timeouts); err != nil {
		if errors.Is(err, kube.ErrStuck) {
			return "", step.Fail(badInput{err})
		}
		if ctx.Err() == nil {
			err = badInput{fmt.Errorf("%w%s", err, notReadyWhy(ctx, env.Client, ns))}
		}
		return "", step.Fail(err)
	}
	step.Done()
	url := env.URL
	if url == "" {
		svc := t.Service.Name
		if t.Added != nil {
			svc = t.Added.Name
		}
		got, err := env.Client.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading service %s: %w", svc, err)
		}
		for _, p := range got.Spec.Ports {
			if p.Port == t.Port.Port && p.NodePort != 0 || t.Added != nil && p.NodePort != 0 {
				url = "http://" + env.NodeIP + ":" + strconv.Itoa(int(p.NodePort)) + "/"
				break
			}
		}
		if url == "" {
			return "", fmt.Errorf("service %s has no node port for port %d", svc, t.Port.Port)
		}
	}
	url = withPath(url, s.Load)
	step = env.Log.Start("waiting for %s to serve", url)
	if err := kube.WaitServing(ctx, url, env.Timeouts); err != nil {
		return "", step.Fail(badInput{err})
	}
	step.Done()
	return url, nil
}

// withPath keeps a URL's host and takes the load's path, if it names one.
func withPath(url string, cfg loadgen.Config) string {
	if len(cfg.Targets) == 1 && strings.HasPrefix(cfg.Targets[0], "/") {
		return strings.TrimSuffix(url, "/") + cfg.Targets[0]
	}
	return url
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
	step.Done()
	return reports, nil
}

// Load is load running in the background of a run.
type Load struct {
	cancel context.CancelFunc
	done   chan struct{}
	report *loadgen.Report
	err    error
	count  chan int
	last   int
}

// StartLoad starts cfg's load until Stop (or ctx's end).
func StartLoad(ctx context.Context, cfg loadgen.Config) *Load {
	loadCtx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel, done: make(chan struct{}), count: make(chan int, 1)}
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
func (l *Load) Sent() int {
	select {
	case n := <-l.count:
		l.last = n
	default:
	}
	return l.last
}

// WaitSent waits until at least n requests were sent (progress of the
// load itself, not a sleep), the load ended, or ctx is done.
func (l *Load) WaitSent(ctx context.Context, n int) {
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
func (l *Load) Stop() (*loadgen.Report, error) {
	l.cancel()
	<-l.done
	return l.report, l.err
}

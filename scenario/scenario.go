package scenario

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

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
	// Favour, when set, is called as a run's load starts (calibration)
	// and what it returns as the load stops: it lets the load generator
	// run first whenever it is ready (internal/sched.DuringLoad), so a
	// burst of the cluster's does not stop nodrop from sending.
	Favour func() (undo func())
	// Generators, when set, sends the run's loads from elsewhere than
	// this process (incluster.Generators: pods of a Job in the cluster),
	// to the Service's ClusterIP; nil: nodrop sends them itself, to the
	// NodePort (or URL).
	Generators Sender
}

// LoadFromCluster reports whether the scenario's load must come from
// pods in the cluster (Env.Generators): a load whose clients balance
// themselves resolves the Service's name, which only the cluster's DNS
// answers.
func (s Scenario) LoadFromCluster() bool {
	for _, t := range s.Traffic {
		if t.Load.Balancer != "" {
			return true
		}
	}
	return false
}

// A Sender sends a run's loads from elsewhere than nodrop's own process
// and merges what its generators saw into one report (loadgen.Merge).
type Sender interface {
	// Send sends cfg's load from namespace ns until ctx ends or
	// cfg.Duration has passed.
	Send(ctx context.Context, ns string, cfg loadgen.Config) (*loadgen.Report, error)
	// Where says where the load comes from, for the run's log.
	Where() string
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
	// MinRate, when set, lets the load fit the machine: a calibration
	// refused because the machine's CPU was taken with nothing happening
	// is tried again with every load at half its rate, while the first
	// stays at MinRate or above. The run is judged at the rate it
	// calibrated at (its reports' rate_target), and says why in
	// Result.EarlierAttempts. 0: the rate stays as asked.
	MinRate int
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
	// Load is the kind of load (its protocol and how it uses
	// connections); its name is how summaries name the traffic.
	Load loadgen.Load
	// Port is the Service port it goes to, by name ("" for the target's).
	Port string
	// Path of HTTP requests ("/" when empty).
	Path string
	// Config is the rest of the load (rate, timeout, method); Run applies
	// Load to it and fills in its target.
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
	for _, rec := range Records(r, nil) {
		if rec.Report != nil {
			rows = append(rows, rec.Row())
		}
	}
	return rows
}

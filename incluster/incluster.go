// Package incluster sends a run's load from inside the cluster under
// test, as its own clients would: the pods of a Job, spread across the
// nodes, each a generator (internal/generator: nodrop's own binary, or
// the suites' test binary, in an image of its own) sending its share of
// the load to the address nodrop gives it (a Service's ClusterIP). nodrop
// attaches to each pod as kubectl attach does: the pod's stdin carries
// its share and the moment to start, and closing it stops the load; its
// stdout carries every request's outcome (loadgen's outcome stream),
// merged with the others' into one report (loadgen.Merge). Only the
// kubeconfig is needed: the API server carries both ways. The Job goes
// on every way out.
package incluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"

	"github.com/nodrop-dev/nodrop/internal/generator"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Generators sends loads from generator pods in the cluster.
type Generators struct {
	REST   *rest.Config
	Client kubernetes.Interface
	// Image is the generator's image (images.Generator), which the
	// nodes can run.
	Image string
	// Pods is how many generator pods share each load (default 2).
	Pods int
	// Nodes, when given, are the nodes the pods run on, spread across
	// them; otherwise the scheduler spreads them across the nodes that
	// take ordinary pods.
	Nodes []string
	// CPU is what each pod requests (default DefaultCPU). A pod that
	// requests none is BestEffort: its cgroup gets the smallest CPU
	// weight there is, so on a busy node its load stands still while
	// every other pod runs.
	CPU resource.Quantity
	// StartTimeout bounds how long the pods may take to run (default
	// DefaultStartTimeout).
	StartTimeout time.Duration
	Log          *progress.Logger
}

// DefaultCPU is the CPU a generator pod requests unless told otherwise:
// about what 500 requests a second on fresh connections take.
var DefaultCPU = resource.MustParse("500m")

// DefaultStartTimeout is how long generator pods may take to run.
const DefaultStartTimeout = 2 * time.Minute

// startLead is how far ahead of now the generators are told to start,
// so that every one of them starts at the same moment.
const startLead = 300 * time.Millisecond

// stopGrace bounds how long the generators may take to end their load
// once told to stop (requests in flight finish within the load's
// timeout), after which their streams are cut.
const stopGrace = 15 * time.Second

// Where says where the load comes from, for a run's log.
func (g Generators) Where() string {
	where := fmt.Sprintf("%d generator pods in the cluster", g.pods())
	if len(g.Nodes) > 0 {
		where += " on " + strings.Join(g.Nodes, ", ")
	}
	return where
}

func (g Generators) cpu() resource.Quantity {
	if g.CPU.IsZero() {
		return DefaultCPU
	}
	return g.CPU
}

func (g Generators) pods() int {
	if g.Pods > 0 {
		return g.Pods
	}
	return 2
}

// ErrCannotStart marks the errors of generator pods that cannot run: no
// right to make the Job, an image the nodes cannot run, pods that never
// start. They are scenario.ErrBadInput too: the user must change
// something, and running again would not help.
var ErrCannotStart = errors.New("the load generators cannot start")

type cannotStart struct{ error }

func (cannotStart) Is(target error) bool {
	return target == ErrCannotStart || target == scenario.ErrBadInput
}
func (e cannotStart) Unwrap() error { return e.error }

func cannotStartf(format string, args ...any) error {
	return cannotStart{fmt.Errorf("the load generators cannot start: "+format, args...)}
}

var _ scenario.Sender = Generators{}

// Send sends cfg's load from the generator pods, in namespace ns, until
// ctx ends (or cfg.Duration has passed) and returns their merged report.
// Its error is for generators that could not start (ErrCannotStart) or
// a bad load; generators that fail once started make the report not
// judged instead.
func (g Generators) Send(ctx context.Context, ns string, cfg loadgen.Config) (*loadgen.Report, error) {
	progress := cfg.Progress
	cfg.Progress, cfg.Witness, cfg.OnStall = nil, nil, nil
	cfg, err := cfg.Normalize()
	if err != nil {
		return nil, err
	}
	shares := loadgen.Split(cfg, g.pods())
	job, err := g.Client.BatchV1().Jobs(ns).Create(ctx, g.job(len(shares)), metav1.CreateOptions{})
	if err != nil {
		return nil, cannotStartf("creating their Job in %s: %v", ns, err)
	}
	defer g.remove(job)
	pods, err := g.waitRunning(ctx, job)
	if err != nil {
		return nil, err
	}
	// The streams outlive ctx: its end is the signal to stop, after
	// which the generators still write their last outcomes and ends.
	streamCtx, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	attached := make([]*attachment, len(pods))
	for i, p := range pods {
		attached[i] = g.attach(streamCtx, p)
	}
	sources, err := start(attached, pods, shares, time.Now().Add(startLead))
	if err != nil {
		cut()
		return nil, err
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		for _, a := range attached {
			a.stop()
		}
		select {
		case <-time.After(stopGrace):
			cut()
		case <-stopped:
		}
	}()
	mergeCtx := context.Background()
	if cfg.Duration > 0 {
		mergeCtx = ctx // stopped before its end: interrupted
	}
	r, err := loadgen.Merge(mergeCtx, sources, progress)
	close(stopped)
	// Every stream was read to its end, or given up as unreadable: what
	// is still attached (a generator whose stream was not read) ends.
	for _, a := range attached {
		a.stdout.Close()
	}
	cut()
	for _, a := range attached {
		a.wait()
	}
	if err != nil {
		return nil, err
	}
	for i, a := range attached {
		if a.err != nil && r.Generators[i].Problem != "" {
			r.Generators[i].Problem += " (" + a.why() + ")"
		}
	}
	return r, nil
}

// job is the generators' Job: n pods, once each, spread across nodes.
func (g Generators) job(n int) *batchv1.Job {
	labels := map[string]string{"app.kubernetes.io/name": "nodrop-generator", "app.kubernetes.io/part-of": "nodrop",
		probes.ObserverLabel: "load-generator"}
	spec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptr.To[int64](int64(stopGrace.Seconds())),
		AutomountServiceAccountToken:  ptr.To(false),
		EnableServiceLinks:            ptr.To(false),
		Containers: []corev1.Container{{
			Name:            "generator",
			Image:           g.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            []string{generator.HelperArg},
			Stdin:           true,
			StdinOnce:       true,
			SecurityContext: kube.RestrictedAsNobody(),
			Resources:       corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: g.cpu()}},
		}},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
			MatchLabelKeys: []string{batchv1.ControllerUidLabel},
			LabelSelector:  &metav1.LabelSelector{MatchLabels: labels},
		}},
	}
	if len(g.Nodes) > 0 {
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: g.Nodes}},
			}}},
		}}
		spec.TopologySpreadConstraints[0].WhenUnsatisfiable = corev1.DoNotSchedule
		// A node the user names takes the pods whatever its taints.
		spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "nodrop-load-", Labels: labels},
		Spec: batchv1.JobSpec{
			Parallelism:  ptr.To(int32(n)),
			Completions:  ptr.To(int32(n)),
			BackoffLimit: ptr.To[int32](0),
			// A bound for a Job nodrop could not delete (killed with it).
			ActiveDeadlineSeconds:   ptr.To(int64((loadgen.MaxDuration + stopGrace + time.Minute).Seconds())),
			TTLSecondsAfterFinished: ptr.To[int32](60),
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

// remove deletes the Job and its pods, whatever became of ctx.
func (g Generators) remove(job *batchv1.Job) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := g.Client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil && g.Log != nil {
		g.Log.Printf("deleting the generators' Job %s/%s: %v", job.Namespace, job.Name, err)
	}
}

// waitRunning waits until every pod of the Job runs, and says why one
// cannot: a container that cannot be made or pulled, a pod that fails or
// is not scheduled in time.
func (g Generators) waitRunning(ctx context.Context, job *batchv1.Job) ([]corev1.Pod, error) {
	timeout := g.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	deadline := time.Now().Add(timeout)
	want := int(*job.Spec.Parallelism)
	sel := batchv1.JobNameLabel + "=" + job.Name
	for {
		list, err := g.Client.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, cannotStartf("listing their pods: %v", err)
		}
		var running []corev1.Pod
		why := fmt.Sprintf("%d of %d pods", len(list.Items), want)
		for _, p := range list.Items {
			if reason := cannotRun(p); reason != "" {
				return nil, cannotStartf("pod %s: %s", p.Name, reason)
			}
			if p.Status.Phase == corev1.PodRunning {
				running = append(running, p)
				continue
			}
			why = fmt.Sprintf("pod %s %s", p.Name, pending(p))
		}
		if len(running) == want {
			return running, nil
		}
		if time.Now().After(deadline) {
			return nil, cannotStartf("not running after %s (%s)", timeout, why)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// cannotRun says why a pod will not run, or "" while it still may.
func cannotRun(p corev1.Pod) string {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return fmt.Sprintf("%s before its load (%s)", strings.ToLower(string(p.Status.Phase)), p.Status.Message)
	}
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
				"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return fmt.Sprintf("%s: %s (image %s)", w.Reason, w.Message, c.Image)
			}
		}
		if t := c.State.Terminated; t != nil {
			return fmt.Sprintf("its generator exited (%s, code %d) before its load", t.Reason, t.ExitCode)
		}
	}
	return ""
}

// pending says what a pod not yet running waits for.
func pending(p corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			return "not scheduled: " + c.Message
		}
	}
	return strings.ToLower(string(p.Status.Phase))
}

// attachment is nodrop attached to one generator pod: its stdin to tell
// it its share and when to stop, its stdout the outcome stream.
type attachment struct {
	stdin  *io.PipeWriter
	stdout *io.PipeReader
	errMu  sync.Mutex
	stderr strings.Builder
	once   sync.Once
	done   chan struct{}
	err    error
}

// attach attaches to the pod's generator until ctx ends or the pod's
// streams do.
func (g Generators) attach(ctx context.Context, p corev1.Pod) *attachment {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	a := &attachment{stdin: inW, stdout: outR, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		req := g.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(p.Namespace).Name(p.Name).SubResource("attach").
			VersionedParams(&corev1.PodAttachOptions{Container: "generator", Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
		exec, err := remotecommand.NewSPDYExecutor(g.REST, "POST", req.URL())
		if err == nil {
			err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: inR, Stdout: outW, Stderr: &lockedWriter{mu: &a.errMu, b: &a.stderr}})
		}
		a.err = err
		outW.CloseWithError(err)
		// The end of stdin, not a closed reader: the executor may still
		// be copying it, and an end is no error to report (a closed
		// reader is, in client-go's log).
		inW.Close()
	}()
	return a
}

// clockWait bounds how long a generator may take to answer its Start
// with its clock.
const clockWait = 10 * time.Second

// start tells each generator its share and the moment to start it (at,
// on this process's clock), and measures from its answer how far its
// clock is from this process's: the outcome streams, on one timeline.
func start(attached []*attachment, pods []corev1.Pod, shares []loadgen.Config, at time.Time) ([]loadgen.Source, error) {
	sources := make([]loadgen.Source, len(attached))
	errs := make([]error, len(attached))
	var wg sync.WaitGroup
	for i, a := range attached {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sources[i].Name = fmt.Sprintf("%s on %s", pods[i].Name, pods[i].Spec.NodeName)
			sources[i].Node = pods[i].Spec.NodeName
			sources[i].R, sources[i].ClockOffset, sources[i].ClockUncertainty, errs[i] = a.start(generator.Start{Load: shares[i], At: at})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("generator pod %s: %w", pods[i].Name, errs[i])
			}
		}()
	}
	wg.Wait()
	return sources, errors.Join(errs...)
}

// start writes the generator's Start and reads its Clock line; the rest
// of its stdout is the outcome stream.
func (a *attachment) start(s generator.Start) (stream io.Reader, offset, uncertainty time.Duration, err error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, 0, 0, err
	}
	out := bufio.NewReader(a.stdout)
	type answer struct {
		line []byte
		err  error
		at   time.Time
	}
	got := make(chan answer, 1)
	sent := time.Now()
	go func() {
		if _, err := a.stdin.Write(append(b, '\n')); err != nil {
			got <- answer{err: err}
			return
		}
		line, err := out.ReadBytes('\n')
		got <- answer{line, err, time.Now()}
	}()
	select {
	case ans := <-got:
		var c generator.Clock
		if ans.err == nil {
			ans.err = json.Unmarshal(ans.line, &c)
		}
		if ans.err != nil {
			return nil, 0, 0, fmt.Errorf("no answer to its load: %w (%s)", ans.err, a.stderrText())
		}
		offset, uncertainty = generator.Offset(c, sent, ans.at)
		if offset.Abs() <= uncertainty {
			// Within what the round trip can tell: the same clock, as
			// far as anyone can say (on kind, the very same one).
			offset = 0
		}
		return out, offset, uncertainty, nil
	case <-time.After(clockWait):
		return nil, 0, 0, fmt.Errorf("no answer to its load within %s", clockWait)
	}
}

// stderrText is what the generator wrote to stderr so far.
func (a *attachment) stderrText() string {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return strings.TrimSpace(a.stderr.String())
}

// stop closes the generator's stdin: it ends its load.
func (a *attachment) stop() { a.once.Do(func() { a.stdin.Close() }) }

// wait waits until the attachment ended.
func (a *attachment) wait() { <-a.done }

// why says how the attachment ended, with the generator's last words.
func (a *attachment) why() string {
	msg := a.err.Error()
	if s := a.stderrText(); s != "" {
		msg += "; it said: " + s
	}
	return msg
}

// lockedWriter keeps the first 4 KiB written to it, for readers that
// may look while it is written.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.b.Len() < 4096 {
		w.b.Write(p)
	}
	return len(p), nil
}

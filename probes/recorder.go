package probes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nodrop-dev/nodrop/lifecycle"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Kind is what happened.
type Kind string

// Event kinds.
const (
	PodCreated          Kind = "pod created"
	PodScheduled        Kind = "pod scheduled"
	ContainerStarted    Kind = "container started"
	PodReady            Kind = "pod ready"
	PodNotReady         Kind = "pod not ready"
	PodDeleting         Kind = "pod deleting" // deletionTimestamp set: preStop runs, then SIGTERM
	ContainerTerminated Kind = "container terminated"
	PodGone             Kind = "pod gone"
	EndpointReady       Kind = "endpoint ready"
	EndpointNotReady    Kind = "endpoint not ready"
	EndpointTerminating Kind = "endpoint terminating"
	EndpointRemoved     Kind = "endpoint removed"
	KubeEvent           Kind = "event"
	App                 Kind = "app" // the sample app's own lifecycle log line
	// Disruption is what the run itself did: the rollout it started, the
	// upgrade command it ran.
	Disruption Kind = "disruption"
	// FaultStart and FaultEnd are chaos the run injected and undid
	// (kube-proxy paused and resumed, a container killed).
	FaultStart Kind = "fault"
	FaultEnd   Kind = "fault undone"
	// Conntrack is what the node's connection tracking held for a lost
	// connection attempt, looked up after the load: where it was sent.
	// It is evidence about a loss, never its cause.
	Conntrack Kind = "conntrack"
	// Ingress is a change of the pods the cluster's ingress controller
	// routes the run's Service to, as its own API reports it.
	Ingress Kind = "ingress"
	// GoAway is what the load's clients saw and the cluster's record
	// cannot: an HTTP/2 server's GOAWAY arriving on their connections
	// (loadgen.Report.GoAways), with the pod that had answered there. It
	// is evidence, never a loss's cause: the pod's own stop is.
	GoAway Kind = "client got GOAWAY"
)

// Event is one thing the cluster or the app did.
type Event struct {
	At     time.Time `json:"at"`
	Kind   Kind      `json:"kind"`
	Pod    string    `json:"pod,omitempty"`
	Detail string    `json:"detail,omitempty"`
	// Why says what the event does to requests, where its source knows
	// (a fault's mechanism); the advice on losses that follow it says it.
	Why string `json:"why,omitempty"`
}

func (e Event) String() string {
	s := string(e.Kind)
	if e.Pod != "" {
		s += " " + e.Pod
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Recorder watches one namespace and keeps a timeline. Times are when
// the watch saw the change (millisecond precision; the API's own
// timestamps have only seconds), except app events, which carry the app's
// own clock (the kind node shares the host's).
type Recorder struct {
	client kubernetes.Interface
	ns     string
	stop   chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	events    []Event
	pods      map[string]podState
	endpoints map[string]endpointState
	following map[string]bool
	ips       map[string]string // pod IP → the last pod seen with it
	// observers are the pods, and the Jobs that own them, labelled as
	// nodrop's own observers (ObserverLabel): kept off the timeline.
	observers map[string]bool
}

// ObserverLabel marks a pod that is nodrop's own, watching or loading
// what is under test and no part of it (a load generator): the Recorder
// keeps it, its Job and their events off the timeline.
const ObserverLabel = "nodrop.dev/observer"

// observer says whether p is one of nodrop's observers, and remembers
// it and its owners so their events are known too.
func (r *Recorder) observer(p *corev1.Pod) bool {
	if _, ok := p.Labels[ObserverLabel]; !ok {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.observers[p.Name] = true
	for _, o := range p.OwnerReferences {
		r.observers[o.Name] = true
	}
	return true
}

type podState struct {
	scheduled, ready, deleting bool
	// Per container: the ID of the instance last seen running, and of
	// the one whose termination was recorded. A restart in place (a
	// crash, Kruise replacing a sidecar's image) is a new instance.
	started, terminated map[string]string
}

type endpointState struct{ ready, serving, terminating bool }

// Start begins recording namespace ns. Stop ends it.
func Start(ctx context.Context, client kubernetes.Interface, ns string) (*Recorder, error) {
	r := &Recorder{
		client: client, ns: ns, stop: make(chan struct{}),
		pods: map[string]podState{}, endpoints: map[string]endpointState{}, following: map[string]bool{},
		ips: map[string]string{}, observers: map[string]bool{},
	}
	r.ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	pods := f.Core().V1().Pods().Informer()
	slices := f.Discovery().V1().EndpointSlices().Informer()
	events := f.Core().V1().Events().Informer()
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandlerFuncs
	}{
		{pods, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { r.onPod(o.(*corev1.Pod)) },
			UpdateFunc: func(_, o any) { r.onPod(o.(*corev1.Pod)) },
			DeleteFunc: func(o any) { r.onPodDeleted(o) },
		}},
		{slices, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { r.onSlice(o.(*discoveryv1.EndpointSlice)) },
			UpdateFunc: func(_, o any) { r.onSlice(o.(*discoveryv1.EndpointSlice)) },
		}},
		{events, cache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) { r.onEvent(o.(*corev1.Event)) },
		}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, err
		}
	}
	f.Start(r.stop)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			close(r.stop)
			return nil, fmt.Errorf("watching %v in %s: cache did not sync", typ, ns)
		}
	}
	return r, nil
}

// PodWithIP is the pod of the namespace last seen with address ip, ""
// if none.
func (r *Recorder) PodWithIP(ip string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ips[ip]
}

// Stop ends recording and waits for log streams to finish.
func (r *Recorder) Stop() {
	close(r.stop)
	r.cancel()
	r.wg.Wait()
}

// Events returns the timeline so far, in time order.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]Event(nil), r.events...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Record adds an event the spec itself saw, such as a step of an upgrade
// it ran in a container.
func (r *Recorder) Record(e Event) { r.add(e) }

// RecordLines records every JSON lifecycle line in out (the format of the
// sample app, the proxy and nginx-upgrade) as an app event of pod.
func (r *Recorder) RecordLines(pod string, out []byte) {
	for _, line := range bytes.Split(out, []byte("\n")) {
		if e, ok := parseAppLine(pod, line); ok {
			r.add(e)
		}
	}
}

func (r *Recorder) add(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *Recorder) onPod(p *corev1.Pod) {
	if r.observer(p) {
		return
	}
	r.mu.Lock()
	st, seen := r.pods[p.Name]
	if !seen {
		st = podState{started: map[string]string{}, terminated: map[string]string{}}
	}
	var events []Event
	now := time.Now()
	ev := func(k Kind, detail string) {
		events = append(events, Event{At: now, Kind: k, Pod: p.Name, Detail: detail})
	}
	if !seen {
		ev(PodCreated, "")
	}
	if p.Status.PodIP != "" {
		r.ips[p.Status.PodIP] = p.Name
	}
	if !st.scheduled && p.Spec.NodeName != "" {
		st.scheduled = true
		ev(PodScheduled, p.Spec.NodeName)
	}
	for _, c := range containerStatuses(p) {
		// A restarted container's previous instance ended: its exit is
		// in LastTerminationState once the new one runs.
		if t := c.LastTerminationState.Terminated; t != nil && t.ContainerID != "" && st.terminated[c.Name] != t.ContainerID {
			st.terminated[c.Name] = t.ContainerID
			ev(ContainerTerminated, fmt.Sprintf("%s exited %d%s (%s)", c.Name, t.ExitCode, signalName(t.ExitCode), t.Reason))
		}
		if t := c.State.Terminated; t != nil && st.terminated[c.Name] != t.ContainerID {
			st.terminated[c.Name] = t.ContainerID
			ev(ContainerTerminated, fmt.Sprintf("%s exited %d%s (%s)", c.Name, t.ExitCode, signalName(t.ExitCode), t.Reason))
		}
		if c.State.Running != nil && c.ContainerID != "" && st.started[c.Name] != c.ContainerID {
			detail := c.Name
			if _, before := st.started[c.Name]; before {
				detail = fmt.Sprintf("%s restarted in place (restart %d, image %s)", c.Name, c.RestartCount, c.Image)
			}
			st.started[c.Name] = c.ContainerID
			ev(ContainerStarted, detail)
			if key := p.Name + "/" + c.ContainerID; !r.following[key] {
				r.following[key] = true
				r.wg.Add(1)
				go r.followLogs(p.Name, c.Name, len(containerStatuses(p)) > 1)
			}
		}
	}
	ready := podReady(p)
	if ready != st.ready {
		st.ready = ready
		if ready {
			ev(PodReady, "")
		} else if seen {
			ev(PodNotReady, "")
		}
	}
	if !st.deleting && p.DeletionTimestamp != nil {
		st.deleting = true
		grace := int64(0)
		if p.DeletionGracePeriodSeconds != nil {
			grace = *p.DeletionGracePeriodSeconds
		}
		ev(PodDeleting, fmt.Sprintf("grace %ds: preStop, then SIGTERM, SIGKILL at the end of the grace period", grace))
	}
	r.pods[p.Name] = st
	r.events = append(r.events, events...)
	r.mu.Unlock()
}

func (r *Recorder) onPodDeleted(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if p, ok := o.(*corev1.Pod); ok && !r.observer(p) {
		r.add(Event{Kind: PodGone, Pod: p.Name})
	}
}

func (r *Recorder) onSlice(s *discoveryv1.EndpointSlice) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	present := map[string]bool{}
	// Each Service has its own slices; with two Services in front of the
	// same pods, each endpoint change shows once per Service.
	svc := "service " + s.Labels[discoveryv1.LabelServiceName]
	for _, ep := range s.Endpoints {
		if ep.TargetRef == nil {
			continue
		}
		pod := ep.TargetRef.Name
		key := s.Name + "/" + pod
		present[key] = true
		cur := endpointState{ready: isTrue(ep.Conditions.Ready), serving: isTrue(ep.Conditions.Serving), terminating: isTrue(ep.Conditions.Terminating)}
		was, seen := r.endpoints[key]
		if seen && was == cur {
			continue
		}
		r.endpoints[key] = cur
		switch {
		case cur.terminating && (!seen || !was.terminating):
			r.events = append(r.events, Event{At: now, Kind: EndpointTerminating, Pod: pod, Detail: fmt.Sprintf("serving=%v, %s", cur.serving, svc)})
		case cur.ready && (!seen || !was.ready):
			r.events = append(r.events, Event{At: now, Kind: EndpointReady, Pod: pod, Detail: svc})
		case !cur.ready && seen && was.ready:
			r.events = append(r.events, Event{At: now, Kind: EndpointNotReady, Pod: pod, Detail: svc})
		}
	}
	for key := range r.endpoints {
		if strings.HasPrefix(key, s.Name+"/") && !present[key] {
			delete(r.endpoints, key)
			r.events = append(r.events, Event{At: now, Kind: EndpointRemoved, Pod: strings.TrimPrefix(key, s.Name+"/"), Detail: svc})
		}
	}
}

func (r *Recorder) onEvent(e *corev1.Event) {
	at := e.EventTime.Time
	if at.IsZero() {
		at = e.LastTimestamp.Time
	}
	if at.IsZero() {
		at = time.Now()
	}
	r.mu.Lock()
	observer := r.observers[e.InvolvedObject.Name]
	r.mu.Unlock()
	if observer {
		return
	}
	pod := ""
	if e.InvolvedObject.Kind == "Pod" {
		pod = e.InvolvedObject.Name
	}
	r.add(Event{At: at, Kind: KubeEvent, Pod: pod, Detail: e.Reason + ": " + e.Message})
}

// containerStatuses are the statuses of a pod's containers that serve:
// its containers and its native sidecars (init containers that keep
// running), sidecars first, as the kubelet starts them.
func containerStatuses(p *corev1.Pod) []corev1.ContainerStatus {
	var out []corev1.ContainerStatus
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			continue
		}
		for _, st := range p.Status.InitContainerStatuses {
			if st.Name == c.Name {
				out = append(out, st)
			}
		}
	}
	return append(out, p.Status.ContainerStatuses...)
}

// followLogs streams a container's log and records the sample app's
// JSON lifecycle lines ({"ts":…,"event":…}) with the app's timestamps.
// In a pod of several containers each line names its container.
func (r *Recorder) followLogs(pod, container string, named bool) {
	defer r.wg.Done()
	req := r.client.CoreV1().Pods(r.ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true})
	stream, err := req.Stream(r.ctx)
	if err != nil {
		return
	}
	defer stream.Close()
	sc := bufio.NewScanner(stream)
	for sc.Scan() {
		if e, ok := parseAppLine(pod, sc.Bytes()); ok {
			if named {
				e.Detail = container + ": " + e.Detail
			}
			r.add(e)
		}
	}
}

func parseAppLine(pod string, line []byte) (Event, bool) {
	l, ok := lifecycle.Parse(line)
	if !ok {
		return Event{}, false
	}
	return Event{At: l.At, Kind: App, Pod: pod, Detail: l.Detail()}, true
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func isTrue(b *bool) bool { return b != nil && *b }

// signalName explains exit codes 128+N of a signal.
func signalName(code int32) string {
	switch code {
	case 137:
		return " = SIGKILL"
	case 143:
		return " = SIGTERM"
	}
	return ""
}

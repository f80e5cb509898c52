package scenario

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nodrop-dev/nodrop/probes"
)

// Fault is chaos injected while the disruption runs under load: a
// container killed, kube-proxy paused. Its start and end are events on the
// run's timeline, and it is undone however the run ends: after For, or
// when the run fails or is interrupted first.
type Fault struct {
	// Name says what is done, as the timeline names it.
	Name string
	// At is when it starts.
	At FaultAt
	// For is how long it lasts before it is undone; 0 for one act (a kill).
	For time.Duration
	// NeedsNodes: the fault runs commands on the cluster's nodes
	// (Env.Nodes); a run without them is refused as bad input.
	NeedsNodes bool
	// Mechanism says what the fault does to requests, as the advice on
	// losses that follow it says it; "" points at the timeline instead.
	Mechanism string
	// Inject does it.
	Inject func(ctx context.Context, l *Live) (Injected, error)
}

// Injected is a fault in place.
type Injected struct {
	// Pod is the pod it was done to, if it was done to one.
	Pod string
	// On says what else it was done to, if anything ("node w1, 3 pods
	// evicted"); the timeline and the log say it with the fault's name.
	On string
	// Undo undoes it (nil when there is nothing to undo); it gets a
	// context that outlives the run's.
	Undo func(context.Context) error
}

// FaultAt is when a fault starts: Delay after the disruption starts or,
// when After is set, Delay after the run's first event of that kind (the
// first old pod deleted: the rollout under way).
type FaultAt struct {
	// Before: the fault is put in place before the disruption starts,
	// and the disruption waits for it (a controller stopped before a pod
	// is deleted: one that reacts within milliseconds would otherwise
	// have done its part already).
	Before bool
	After  probes.Kind
	// Share, with After, waits instead for that many events as this share
	// of the Deployment's replicas, each of a pod of its own (0.3 after
	// PodDeleting: 30% of the old pods deleted; at least one).
	Share float64
	Delay time.Duration
}

// NodeShell runs shell scripts on a cluster's nodes, as root in each
// node's own namespaces (on a kind cluster: in the node's container).
type NodeShell interface {
	// Nodes are the names of the nodes, as Kubernetes names them.
	Nodes(ctx context.Context) ([]string, error)
	// Run runs script with sh -c on node and returns its output.
	Run(ctx context.Context, node, script string) (string, error)
}

// faultPollEvery is how often a fault waiting for an event looks.
const faultPollEvery = 20 * time.Millisecond

// faults are a run's faults under way.
type faults struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
	undo []*undoOnce
	// placing counts the Before faults not yet in place (or failed).
	placing sync.WaitGroup
	// settled is closed when the disruption settled: a fault still
	// waiting for its event then never comes.
	settled chan struct{}
	// stop is closed when the run ends early: nothing more is injected,
	// and what is in place is undone at once.
	stop     chan struct{}
	stopOnce sync.Once
}

// errStopped ends a fault's wait when the run ended first.
var errStopped = errors.New("the run ended first")

type undoOnce struct {
	once sync.Once
	fn   func(context.Context) error
	err  error
	done func() // records the fault's end
}

func (u *undoOnce) run(ctx context.Context) error {
	u.once.Do(func() {
		u.err = u.fn(ctx)
		if u.err == nil {
			u.done()
		}
	})
	return u.err
}

// startFaults starts each fault's clock at trigger.
func startFaults(ctx context.Context, l *Live, trigger time.Time, list []Fault) *faults {
	f := &faults{settled: make(chan struct{}), stop: make(chan struct{})}
	for _, fault := range list {
		f.wg.Add(1)
		placed := func() {}
		if fault.At.Before {
			f.placing.Add(1)
			placed = sync.OnceFunc(f.placing.Done)
		}
		go func() {
			defer f.wg.Done()
			defer placed()
			if err := f.run(ctx, l, trigger, fault, placed); err != nil && !errors.Is(err, errStopped) {
				f.mu.Lock()
				f.errs = append(f.errs, fmt.Errorf("fault %s: %w", fault.Name, err))
				f.mu.Unlock()
			}
		}()
	}
	return f
}

// placed returns once every Before fault is in place, with what went
// wrong if one could not be.
func (f *faults) placed() error {
	f.placing.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}

// run injects fault when its moment comes and undoes it after its time;
// placed is called once it is in place.
func (f *faults) run(ctx context.Context, l *Live, trigger time.Time, fault Fault, placed func()) error {
	from := trigger
	if fault.At.After != "" && !fault.At.Before {
		n := 1
		if fault.At.Share > 0 {
			replicas, err := l.replicas(ctx)
			if err != nil {
				return err
			}
			n = max(1, int(math.Ceil(fault.At.Share*float64(replicas)-1e-9)))
		}
		var err error
		if from, err = f.waitFor(ctx, l, trigger, fault.At.After, n); err != nil {
			return err
		}
	}
	if err := f.sleepUntil(ctx, from.Add(fault.At.Delay)); err != nil {
		return err
	}
	// The fault takes effect somewhere within Inject (a command on a node
	// takes tens of milliseconds to start); its start is when Inject was
	// called, so no loss it causes comes before it.
	at := time.Now()
	in, err := fault.Inject(ctx, l)
	if err != nil {
		return err
	}
	detail := fault.Name
	if in.On != "" {
		detail += " (" + in.On + ")"
	}
	l.Recorder.Record(probes.Event{At: at, Kind: probes.FaultStart, Pod: in.Pod, Detail: detail, Why: fault.Mechanism})
	if in.Pod != "" {
		detail += " (pod " + in.Pod + ")"
	}
	l.Env.Log.Printf("  • fault: %s", detail)
	if in.Undo == nil {
		return nil
	}
	u := &undoOnce{fn: in.Undo, done: func() {
		l.Recorder.Record(probes.Event{At: time.Now(), Kind: probes.FaultEnd, Pod: in.Pod, Detail: fault.Name})
		l.Env.Log.Printf("  • fault undone: %s", fault.Name)
	}}
	f.mu.Lock()
	f.undo = append(f.undo, u)
	f.mu.Unlock()
	placed() // and undone however the run ends
	if err := f.sleepUntil(ctx, time.Now().Add(fault.For)); err != nil {
		return err // undone by the run's clean-up
	}
	return u.run(context.WithoutCancel(ctx))
}

// waitFor returns when the n-th event of kind since trigger happened,
// counting one per pod (a pod's events of one kind are one step).
func (f *faults) waitFor(ctx context.Context, l *Live, trigger time.Time, kind probes.Kind, n int) (time.Time, error) {
	tick := time.NewTicker(faultPollEvery)
	defer tick.Stop()
	settled := f.settled
	for {
		seen, pods := 0, map[string]bool{}
		for _, e := range l.Recorder.Events() {
			if e.Kind != kind || e.At.Before(trigger) || (e.Pod != "" && pods[e.Pod]) {
				continue
			}
			pods[e.Pod], seen = true, seen+1
			if seen == n {
				return e.At, nil
			}
		}
		if settled == nil { // and looked once more since
			if n > 1 {
				return time.Time{}, badInputf("never started: the disruption settled with %d %s of the %d it waits for", seen, kind, n)
			}
			return time.Time{}, badInputf("never started: the disruption settled with no %s", kind)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-f.stop:
			return time.Time{}, errStopped
		case <-settled:
			settled = nil
		case <-tick.C:
		}
	}
}

func (f *faults) sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(max(0, time.Until(t)))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-f.stop:
		return errStopped
	case <-timer.C:
		return ctx.Err()
	}
}

// wait returns once every fault has ended (undone or never started),
// with what went wrong.
func (f *faults) wait() error {
	close(f.settled)
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}

// end stops every fault and undoes whatever is still in place: the run
// ended, early or not. It is the run's clean-up, so it runs once more
// after wait, then finding nothing left to do.
func (f *faults) end(ctx context.Context) error {
	f.stopOnce.Do(func() { close(f.stop) })
	f.wg.Wait()
	f.mu.Lock()
	undo := append([]*undoOnce(nil), f.undo...)
	f.mu.Unlock()
	var errs []error
	for _, u := range undo {
		errs = append(errs, u.run(ctx))
	}
	return errors.Join(errs...)
}

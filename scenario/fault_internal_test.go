package scenario

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nodrop-dev/nodrop/probes"
)

// fakeFault records when it was injected and undone.
type fakeFault struct {
	mu               sync.Mutex
	injected, undone time.Time
}

func (f *fakeFault) fault(at FaultAt, d time.Duration) Fault {
	return Fault{Name: "fake", At: at, For: d, Inject: func(context.Context, *Live) (Injected, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.injected = time.Now()
		return Injected{Pod: "web-1", Undo: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.undone = time.Now()
			return nil
		}}, nil
	}}
}

func (f *fakeFault) times() (injected, undone time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.injected, f.undone
}

func kinds(events []probes.Event) []probes.Kind {
	var out []probes.Kind
	for _, e := range events {
		out = append(out, e.Kind)
	}
	return out
}

// A fault starts its delay after its event, lasts For, and both ends are
// on the timeline.
func TestFaultFollowsItsEventAndIsUndone(t *testing.T) {
	rec := &probes.Recorder{}
	live := &Live{Recorder: rec}
	trigger := time.Now()
	deleted := trigger.Add(30 * time.Millisecond)
	rec.Record(probes.Event{At: deleted, Kind: probes.PodDeleting, Pod: "web-0"})
	ff := &fakeFault{}
	f := startFaults(context.Background(), live, trigger, []Fault{ff.fault(FaultAt{After: probes.PodDeleting, Delay: 50 * time.Millisecond}, 100*time.Millisecond)})
	time.Sleep(10 * time.Millisecond)
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	injected, undone := ff.times()
	if injected.Before(deleted.Add(50*time.Millisecond)) || undone.Sub(injected) < 100*time.Millisecond {
		t.Errorf("injected %s after the deletion, undone %s after that; want ≥ 50 ms and ≥ 100 ms", injected.Sub(deleted), undone.Sub(injected))
	}
	got := kinds(rec.Events())
	if len(got) != 3 || got[1] != probes.FaultStart || got[2] != probes.FaultEnd {
		t.Errorf("timeline %v, want the deletion, the fault, its undoing", got)
	}
	if err := f.end(context.Background()); err != nil || len(rec.Events()) != 3 {
		t.Errorf("ending after the fault was undone: %v, %d events", err, len(rec.Events()))
	}
}

// A run that ends first (failed, interrupted) undoes the fault at once,
// and injects nothing after it ended.
func TestRunEndingFirstUndoesTheFault(t *testing.T) {
	rec := &probes.Recorder{}
	live := &Live{Recorder: rec}
	inPlace, notYet := &fakeFault{}, &fakeFault{}
	f := startFaults(context.Background(), live, time.Now(), []Fault{
		inPlace.fault(FaultAt{}, time.Hour),
		notYet.fault(FaultAt{Delay: time.Hour}, time.Second),
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if injected, _ := inPlace.times(); !injected.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fault at once was not injected")
		}
	}
	start := time.Now()
	if err := f.end(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, undone := inPlace.times(); undone.IsZero() || time.Since(start) > time.Second {
		t.Errorf("the fault in place was not undone at once (%s)", time.Since(start))
	}
	if injected, _ := notYet.times(); !injected.IsZero() {
		t.Error("a fault was injected after the run ended")
	}
	if got := kinds(rec.Events()); len(got) != 2 || got[1] != probes.FaultEnd {
		t.Errorf("timeline %v, want the fault and its undoing", got)
	}
}

// A fault waiting for an event the disruption never brought is bad
// input, not a silent pass.
func TestFaultWhoseEventNeverComesIsBadInput(t *testing.T) {
	ff := &fakeFault{}
	f := startFaults(context.Background(), &Live{Recorder: &probes.Recorder{}}, time.Now(), []Fault{ff.fault(FaultAt{After: probes.PodDeleting}, time.Second)})
	err := f.wait()
	if !errors.Is(err, ErrBadInput) {
		t.Fatalf("err = %v, want bad input", err)
	}
	if injected, _ := ff.times(); !injected.IsZero() {
		t.Error("injected without its event")
	}
}

// A fault at a share of the rollout waits for that many pods' deletions
// (one event per pod, however often the watch reports it), and a rollout
// that settles with fewer is bad input.
func TestFaultAtAShareOfThePods(t *testing.T) {
	replicas := int32(4)
	client := fake.NewClientset(&appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas},
	})
	rec := &probes.Recorder{}
	live := &Live{Env: Env{Client: client}, Namespace: "ns", Deployment: "web", Recorder: rec}
	trigger := time.Now()
	second := trigger.Add(40 * time.Millisecond)
	rec.Record(probes.Event{At: trigger.Add(10 * time.Millisecond), Kind: probes.PodDeleting, Pod: "web-0"})
	rec.Record(probes.Event{At: trigger.Add(20 * time.Millisecond), Kind: probes.PodDeleting, Pod: "web-0"})
	rec.Record(probes.Event{At: second, Kind: probes.PodDeleting, Pod: "web-1"})
	ff := &fakeFault{}
	f := startFaults(context.Background(), live, trigger, []Fault{ff.fault(FaultAt{After: probes.PodDeleting, Share: 0.5}, time.Millisecond)})
	if err := f.wait(); err != nil {
		t.Fatal(err)
	}
	if injected, _ := ff.times(); injected.Before(second) {
		t.Errorf("injected before the second pod's deletion")
	}

	late := &fakeFault{}
	f = startFaults(context.Background(), live, trigger, []Fault{late.fault(FaultAt{After: probes.PodDeleting, Share: 0.75}, time.Millisecond)})
	if err := f.wait(); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "2 pod deleting of the 3") {
		t.Errorf("err = %v, want bad input: 2 of the 3 deletions", err)
	}
}

// A fault placed before the disruption is in place, its undo registered,
// when placed returns; faults at later moments do not hold it up; one that
// cannot be placed says why.
func TestFaultPlacedBeforeTheDisruption(t *testing.T) {
	rec := &probes.Recorder{}
	live := &Live{Recorder: rec}
	before, later := &fakeFault{}, &fakeFault{}
	f := startFaults(context.Background(), live, time.Now(), []Fault{
		before.fault(FaultAt{Before: true, After: probes.PodDeleting}, time.Hour),
		later.fault(FaultAt{Delay: time.Hour}, time.Second),
	})
	if err := f.placed(); err != nil {
		t.Fatal(err)
	}
	if injected, _ := before.times(); injected.IsZero() {
		t.Fatal("placed returned before the fault was in place")
	}
	if err := f.end(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, undone := before.times(); undone.IsZero() {
		t.Error("the fault placed before was not undone at the end")
	}
	broken := Fault{Name: "broken", At: FaultAt{Before: true}, Inject: func(context.Context, *Live) (Injected, error) {
		return Injected{}, errors.New("no such process")
	}}
	f = startFaults(context.Background(), live, time.Now(), []Fault{broken})
	if err := f.placed(); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("placed = %v, want the fault's error", err)
	}
	f.end(context.Background())
}

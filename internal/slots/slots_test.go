package slots

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Holders of weight 1 and 2 on two slots: never more than two slots'
// worth at once, and a holder of weight 2 alone.
func TestNoMoreWeightThanSlots(t *testing.T) {
	dir := t.TempDir()
	var holding, most atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each holder opens the directory itself, as another process would.
			s, err := Open(dir, 2)
			if err != nil {
				t.Error(err)
				return
			}
			k := 1 + i%2
			release, err := s.Acquire(context.Background(), k)
			if err != nil {
				t.Error(err)
				return
			}
			n := holding.Add(int32(k))
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(30 * time.Millisecond)
			holding.Add(-int32(k))
			release()
		}()
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("at most %d held at once, want 2", most.Load())
	}
}

// A heavy run waiting for every slot gets them before light runs that
// came after it, however many of those come.
func TestHeavyIsNotStarved(t *testing.T) {
	dir := t.TempDir()
	open := func() *Slots {
		s, err := Open(dir, 2)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, err := open().Acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	// hold takes k slots in a goroutine of its own, notes who got them,
	// and gives them back 20 ms later.
	hold := func(who string, k int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := open().Acquire(context.Background(), k)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, who)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			release()
		}()
	}
	hold("heavy", 2)
	time.Sleep(3 * retry) // the heavy one is at the gate
	for range 3 {
		hold("light", 1)
	}
	time.Sleep(3 * retry)
	first()
	wg.Wait()
	if len(order) != 4 || order[0] != "heavy" {
		t.Errorf("took the slots in the order %v, want the heavy one first", order)
	}
}

func TestAcquireGivesUpWithItsContext(t *testing.T) {
	s, err := Open(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	release, err := s.Acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a full set of slots: %v, want the context's deadline", err)
	}
}

func TestOpenRefusesNoSlots(t *testing.T) {
	if _, err := Open(t.TempDir(), 0); err == nil {
		t.Error("zero slots accepted")
	}
}

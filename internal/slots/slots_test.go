package slots

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestNoMoreHoldersThanSlots(t *testing.T) {
	dir := t.TempDir()
	var holding, most atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each holder opens the directory itself, as another process would.
			s, err := Open(dir, 2)
			if err != nil {
				t.Error(err)
				return
			}
			release, err := s.Acquire(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			n := holding.Add(1)
			for {
				m := most.Load()
				if n <= m || most.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(30 * time.Millisecond)
			holding.Add(-1)
			release()
		}()
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("at most %d held at once, want 2", most.Load())
	}
}

func TestAcquireGivesUpWithItsContext(t *testing.T) {
	s, err := Open(t.TempDir(), 1)
	if err != nil {
		t.Fatal(err)
	}
	release, err := s.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a full set of slots: %v, want the context's deadline", err)
	}
}

func TestOpenRefusesNoSlots(t *testing.T) {
	if _, err := Open(t.TempDir(), 0); err == nil {
		t.Error("zero slots accepted")
	}
}

// Package slots is a counting semaphore shared by processes: n lock
// files in a directory, each held with flock(2) by at most one holder.
// The kernel drops a lock when its holder exits, so a killed process
// never keeps a slot.
package slots

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// retry is how often a waiting Acquire tries the slots again.
const retry = 50 * time.Millisecond

// Slots are n slots in a directory; every process that opens the same
// directory with the same n shares them.
type Slots struct {
	dir string
	n   int
}

// Open returns the n slots kept in dir, creating dir if needed.
func Open(dir string, n int) (*Slots, error) {
	if n < 1 {
		return nil, fmt.Errorf("slots: want at least one, got %d", n)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	return &Slots{dir: dir, n: n}, nil
}

// Acquire waits until k slots are free (k above n counts as n), takes
// them, and returns the function that gives them back; it gives up when
// ctx is done. A heavy run takes several slots, so it runs beside fewer
// others. Waiters queue at a gate: the one holding it gathers its slots
// as they come free and lets the gate go only when it has them all, so
// a stream of light runs cannot starve a heavy one; a holder of slots
// never waits for the gate, so nothing deadlocks.
func (s *Slots) Acquire(ctx context.Context, k int) (release func(), err error) {
	k = max(1, min(k, s.n))
	gate, err := s.lock(ctx, "gate.lock")
	if err != nil {
		return nil, err
	}
	defer gate.Close()
	var held []*os.File
	free := func() {
		for _, f := range held {
			f.Close() // closing the file drops the lock
		}
	}
	for len(held) < k {
		f, err := s.take()
		if err != nil {
			free()
			return nil, err
		}
		if f != nil {
			held = append(held, f)
			continue
		}
		if err := wait(ctx); err != nil {
			free()
			return nil, err
		}
	}
	return free, nil
}

// take locks one free slot, or returns nil when none is. A slot the
// caller already holds is not free: flock(2) locks belong to the open
// file, and take opens it again.
func (s *Slots) take() (*os.File, error) {
	for i := range s.n {
		f, err := s.try(fmt.Sprintf("slot-%d.lock", i))
		if err != nil || f != nil {
			return f, err
		}
	}
	return nil, nil
}

// lock waits for the lock file name and takes it.
func (s *Slots) lock(ctx context.Context, name string) (*os.File, error) {
	for {
		f, err := s.try(name)
		if err != nil || f != nil {
			return f, err
		}
		if err := wait(ctx); err != nil {
			return nil, err
		}
	}
}

// try takes the lock file name if no one holds it: the open file holds
// the lock; nil when another holder has it.
func (s *Slots) try(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("slots: %w", err)
	}
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err == nil {
		return f, nil
	}
	f.Close()
	if !errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("slots: locking %s: %w", f.Name(), err)
	}
	return nil, nil
}

// wait sleeps until the next try, or returns why ctx ended.
func wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(retry):
		return nil
	}
}

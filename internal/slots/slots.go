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

// Acquire waits until a slot is free, takes it, and returns the function
// that gives it back; it gives up when ctx is done.
func (s *Slots) Acquire(ctx context.Context) (release func(), err error) {
	for {
		for i := range s.n {
			f, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("slot-%d.lock", i)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return nil, fmt.Errorf("slots: %w", err)
			}
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return func() { f.Close() }, nil // closing the file drops the lock
			}
			f.Close()
			if !errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("slots: locking %s: %w", f.Name(), err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(retry):
		}
	}
}

package cachedir

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A second taker of a held lock waits, says so once, and gets it when
// the first lets go; one that runs out of time says why.
func TestLockIsOneAtATime(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(context.Background(), dir, "node-image", nil)
	if err != nil {
		t.Fatal(err)
	}
	var said []string
	wait := func(format string, args ...any) { said = append(said, format) }
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if _, err := Lock(ctx, dir, "node-image", wait); err == nil || !strings.Contains(err.Error(), "waiting for the cache lock") {
		t.Fatalf("a held lock taken again: %v", err)
	}
	if len(said) != 1 || !strings.Contains(said[0], "waiting for another nodrop process") {
		t.Errorf("the wait was said %d times: %q", len(said), said)
	}
	got := make(chan error, 1)
	go func() {
		u, err := Lock(context.Background(), dir, "node-image", nil)
		if err == nil {
			u()
		}
		got <- err
	}()
	time.Sleep(200 * time.Millisecond)
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lock was let go and the waiter never got it")
	}
	// Another name is another lock.
	u, err := Lock(context.Background(), dir, "debian-base", nil)
	if err != nil {
		t.Fatal(err)
	}
	u()
}

// A scratch folder a failed chroot build left with /proc mounted inside
// goes whole: the mount is detached first.
func TestRemoveScratchUnmountsWhatAFailedBuildLeft(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount /proc")
	}
	scratch := filepath.Join(t.TempDir(), "rootfs.tmp")
	proc := filepath.Join(scratch, "proc")
	if err := os.MkdirAll(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "half-made"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Skipf("cannot mount proc here: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(proc, unix.MNT_DETACH) })
	if err := os.RemoveAll(scratch); err == nil {
		t.Fatal("os.RemoveAll removed a folder with /proc mounted in it: the test shows nothing")
	}
	if err := RemoveScratch(scratch); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(scratch); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", scratch, err)
	}
	if m, _ := mountsUnder(scratch); len(m) > 0 {
		t.Errorf("still mounted: %v", m)
	}
	if err := RemoveScratch(scratch); err != nil {
		t.Errorf("removing what is gone: %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c`); got != "/a b/c" {
		t.Errorf("unescapeMount = %q", got)
	}
}

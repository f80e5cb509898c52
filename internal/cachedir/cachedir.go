// Package cachedir is the one place that knows where nodrop keeps what
// it builds: $NODROP_CACHE, else nodrop/ in the user's cache directory
// (~/.cache/nodrop), outside any clone so builds survive a fresh checkout.
package cachedir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Env names the variable that moves the cache.
const Env = "NODROP_CACHE"

// Dir returns the cache directory; it does not create it.
func Dir() (string, error) {
	if d := os.Getenv(Env); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set %s (%w)", Env, err)
	}
	return filepath.Join(d, "nodrop"), nil
}

// Lock takes the cache's lock named name (a file under dir/locks, held
// with flock, so it goes with the process however it ends) for one
// build at a time across nodrop processes: two terminals, or a CI job
// beside a laptop run, building the same thing into the same scratch
// folders would spoil both. It waits while another process holds the
// lock, saying so once through wait, until ctx ends.
func Lock(ctx context.Context, dir, name string, wait func(format string, args ...any)) (unlock func(), err error) {
	locks := filepath.Join(dir, "locks")
	if err := os.MkdirAll(locks, 0o755); err != nil {
		return nil, fmt.Errorf("cache lock %s: %w", name, err)
	}
	path := filepath.Join(locks, name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache lock %s: %w", name, err)
	}
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("cache lock %s: %w", path, err)
		}
		if !said && wait != nil {
			wait("• waiting for another nodrop process building %s (it holds %s) …", name, path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the cache lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// RemoveScratch removes a build's scratch folder and everything in it.
// A build that failed inside a chroot (debootstrap) can leave file
// systems mounted there (/proc, /sys): they are detached first, deepest
// first, so the folder really goes and the next build starts clean. The
// error says what could not be removed; nil when path does not exist.
func RemoveScratch(path string) error {
	path = filepath.Clean(path)
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	mounts, err := mountsUnder(path)
	if err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %s: unmounting %s, which a failed build left mounted: %w", path, m, err)
		}
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// mountsUnder lists the mount points at or below path, deepest first.
func mountsUnder(path string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, nil // no mount table to read: nothing known to be mounted
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := unescapeMount(f[4])
		if m == path || strings.HasPrefix(m, path+"/") {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// FileHash is the hex SHA-256 of a file's bytes: what a build from that
// file is tagged by.
func FileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

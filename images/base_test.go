package images_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// buildBaseArg, as the test binary's first argument, makes it one nodrop
// process building the base image: cache directory and reference follow.
const buildBaseArg = "__nodrop-test-build-base"

func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == buildBaseArg {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if _, err := images.EnsureBaseAs(ctx, os.Args[2], "", os.Args[3], progress.New(os.Stderr, false)); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// buildBase starts this test binary as a process of its own (a group of
// its own, as a terminal's job is) that builds ref into the cache dir.
func buildBase(t *testing.T, dir, ref string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], buildBaseArg, dir, ref)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// mountedUnder lists what is mounted at or below path.
func mountedUnder(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], path+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// Two nodrop processes building the base image into one cold cache at
// once both succeed (one builds, the other waits and finds it built); a
// build SIGKILLed with debootstrap halfway, its chroot's /proc left
// mounted in the cache, is followed by one that succeeds. Real processes,
// real debootstrap, real mounts: what a user with two terminals, or a CI
// job killed at its timeout, does to the cache.
func TestBaseBuildAtOnceAndAfterAKill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("building the base image needs root (debootstrap), as `make test` runs")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Fatal("debootstrap is not installed (hack/ensure-docker.sh installs it)")
	}
	dir := t.TempDir()
	tag := func() string {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		ref := "nodrop/debian-base:proctest-" + hex.EncodeToString(b)
		t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", ref).Run() })
		return ref
	}

	ref := tag()
	a, outA := buildBase(t, dir, ref)
	b, outB := buildBase(t, dir, ref)
	errA, errB := a.Wait(), b.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("two builds at once: %v\n%s\n%v\n%s", errA, outA, errB, outB)
	}
	if waited := strings.Count(outA.String()+outB.String(), "waiting for another nodrop process building debian-base"); waited != 1 {
		t.Errorf("one build waits for the other; %d said so:\n%s\n%s", waited, outA, outB)
	}
	if err := exec.Command("docker", "image", "inspect", ref).Run(); err != nil {
		t.Fatalf("%s not built: %v", ref, err)
	}

	ref = tag()
	scratch := filepath.Join(dir, "debian-base.tmp")
	killed, out := buildBase(t, dir, ref)
	deadline := time.Now().Add(10 * time.Minute)
	for len(mountedUnder(t, scratch)) == 0 {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-killed.Process.Pid, syscall.SIGKILL)
			_ = killed.Wait()
			t.Fatalf("debootstrap never mounted anything in its chroot:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Its whole process group, debootstrap included, as a terminal's
	// kill -9 or a CI runner's timeout would.
	if err := syscall.Kill(-killed.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	time.Sleep(500 * time.Millisecond) // the group's last processes die
	if left := mountedUnder(t, scratch); len(left) == 0 {
		t.Fatal("the killed build left nothing mounted: the case this test is about did not happen")
	} else {
		t.Logf("the killed build left mounted: %v", left)
	}

	again, out := buildBase(t, dir, ref)
	if err := again.Wait(); err != nil {
		t.Fatalf("the build after a killed one: %v\n%s", err, out)
	}
	if err := exec.Command("docker", "image", "inspect", ref).Run(); err != nil {
		t.Fatalf("%s not built after the killed build: %v", ref, err)
	}
	if m := mountedUnder(t, scratch); len(m) > 0 {
		t.Errorf("still mounted under the cache: %v", m)
	}
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("the scratch folder stays: %v", err)
	}
}

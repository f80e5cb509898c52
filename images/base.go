package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// Debian base of the images that need a shell, an init or nginx:
// debootstrap's minbase (dash as /bin/sh, coreutils for `sleep`) plus
// tini, dumb-init, nginx-light and haproxy, from Debian's packages, imported into
// Docker. No registry.
const (
	baseSuite = "bookworm"
	baseRepo  = "nodrop/debian-base"
)

var basePackages = []string{"tini", "dumb-init", "nginx-light", "haproxy"}

// BaseRef is the reference of the Debian base image.
func BaseRef() string {
	h := sha256.Sum256([]byte(baseSuite + "\n" + strings.Join(basePackages, ",") + "\nv1"))
	return baseRepo + ":" + baseSuite + "-" + hex.EncodeToString(h[:])[:12]
}

// EnsureBase builds the Debian base image unless Docker has it.
func EnsureBase(ctx context.Context, cacheDir, mirror string, log *progress.Logger) (string, error) {
	return ensureBase(ctx, cacheDir, mirror, BaseRef(), log)
}

// ensureBase builds the base image as ref: one build at a time per cache,
// in a scratch folder that a killed build may have left mounted.
func ensureBase(ctx context.Context, cacheDir, mirror, ref string, log *progress.Logger) (string, error) {
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil {
		return ref, nil
	}
	if os.Geteuid() != 0 {
		return "", fmt.Errorf("building the Debian base image %s needs root (debootstrap)", ref)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap is not installed (apt-get install debootstrap, or run hack/ensure-docker.sh): %w", err)
	}
	// One build of it at a time on this machine; whoever waited finds
	// it built.
	unlock, err := cachedir.Lock(ctx, cacheDir, "debian-base", log.Printf)
	if err != nil {
		return "", err
	}
	defer unlock()
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil {
		return ref, nil
	}
	step := log.Start("building Debian %s base image %s (debootstrap minbase + %s)", baseSuite, ref, strings.Join(basePackages, ", "))
	dir := filepath.Join(cacheDir, "debian-base.tmp")
	if err := cachedir.RemoveScratch(dir); err != nil {
		return "", step.Fail(err)
	}
	// A build that fails leaves nothing mounted or half-made behind.
	defer cachedir.RemoveScratch(dir)
	args := []string{"--variant=minbase", "--include=" + strings.Join(basePackages, ","), baseSuite, dir}
	if mirror != "" {
		args = append(args, mirror)
	}
	if err := log.Run(ctx, exec.Command("debootstrap", args...)); err != nil {
		return "", step.Fail(err)
	}
	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"} {
		matches, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
	tar := exec.Command("tar", "-C", dir, "-c", ".")
	out, err := tar.StdoutPipe()
	if err != nil {
		return "", step.Fail(err)
	}
	imp := exec.Command("docker", "import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "-", ref)
	imp.Stdin = out
	if err := tar.Start(); err != nil {
		return "", step.Fail(err)
	}
	importErr := log.Run(ctx, imp)
	io.Copy(io.Discard, out)
	if err := tar.Wait(); err != nil {
		return "", step.Fail(fmt.Errorf("tar of the base root file system: %w", err))
	}
	if importErr != nil {
		return "", step.Fail(importErr)
	}
	step.Done()
	return ref, nil
}

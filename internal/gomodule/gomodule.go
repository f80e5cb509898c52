// Package gomodule builds a program published as a Go module into an
// image without a registry: the module's source from the Go module
// proxy, compiled once (the binary cached under the cache directory),
// packaged FROM scratch and tagged by the binary's hash. OpenKruise's
// manager and the Traefik ingress controller are built this way.
package gomodule

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// Program is one binary of a module and the image it goes into.
type Program struct {
	// Module and Version, as the module proxy knows them.
	Module, Version string
	// Package is the main package, relative to the module's root ("."
	// for the root).
	Package string
	// Name is the binary's name, in the cache and in the image (/Name).
	Name string
	// Repo is the image's repository; its tag is Version and the
	// binary's hash.
	Repo string
	// Dir is where the source, the binary and the image's context are
	// kept, under the cache directory.
	Dir string
	// About says how long the first compile takes, for the progress line.
	About string
}

// Built is a program's image and the source tree it came from.
type Built struct {
	Image  string
	Source string
}

// Build compiles the program (once; the binary is cached) and builds its
// image unless Docker has it.
func (p Program) Build(ctx context.Context, cacheDir string, log *progress.Logger) (*Built, error) {
	// One build of it at a time on this machine: two would write the same
	// scratch files. Whoever waited finds it built.
	unlock, err := cachedir.Lock(ctx, cacheDir, p.Name+"-"+p.Version, log.Printf)
	if err != nil {
		return nil, err
	}
	defer unlock()
	src, err := p.source(ctx, cacheDir, log)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cacheDir, p.Dir)
	bin := filepath.Join(dir, "bin", p.Name+"-"+p.Version)
	if _, err := os.Stat(bin); err != nil {
		step := log.Start("compiling %s %s (%s the first time)", p.Name, p.Version, p.About)
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return nil, step.Fail(err)
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin+".tmp", "./"+filepath.Clean(p.Package))
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		if err := log.Run(ctx, cmd); err != nil {
			return nil, step.Fail(fmt.Errorf("compiling %s@%s: %w", p.Module, p.Version, err))
		}
		if err := os.Rename(bin+".tmp", bin); err != nil {
			return nil, step.Fail(err)
		}
		step.Done()
	}
	sum, err := cachedir.FileHash(bin)
	if err != nil {
		return nil, err
	}
	ref := fmt.Sprintf("%s:%s-%s", p.Repo, p.Version, sum[:12])
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() != nil {
		step := log.Start("building image %s (FROM scratch)", ref)
		if err := p.image(ctx, dir, bin, ref, log); err != nil {
			return nil, step.Fail(err)
		}
		step.Done()
	}
	return &Built{Image: ref, Source: src}, nil
}

// Source returns a writable copy of the module's source, fetched from the
// Go module proxy once.
func (p Program) Source(ctx context.Context, cacheDir string, log *progress.Logger) (string, error) {
	unlock, err := cachedir.Lock(ctx, cacheDir, p.Name+"-"+p.Version, log.Printf)
	if err != nil {
		return "", err
	}
	defer unlock()
	return p.source(ctx, cacheDir, log)
}

// source is Source with the program's cache lock held.
func (p Program) source(ctx context.Context, cacheDir string, log *progress.Logger) (string, error) {
	dir := filepath.Join(cacheDir, p.Dir)
	src := filepath.Join(dir, "src-"+p.Version)
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err == nil {
		return src, nil
	}
	step := log.Start("fetching %s@%s from the Go module proxy", p.Module, p.Version)
	modDir, err := p.download(ctx)
	if err != nil {
		return "", step.Fail(err)
	}
	if err := cachedir.RemoveScratch(src + ".tmp"); err != nil {
		return "", step.Fail(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", step.Fail(err)
	}
	// The module cache is read-only; building with -mod=mod may touch go.sum.
	if err := log.Run(ctx, exec.Command("cp", "-r", modDir, src+".tmp")); err != nil {
		return "", step.Fail(err)
	}
	if err := log.Run(ctx, exec.Command("chmod", "-R", "u+w", src+".tmp")); err != nil {
		return "", step.Fail(err)
	}
	if err := os.Rename(src+".tmp", src); err != nil {
		return "", step.Fail(err)
	}
	step.Done()
	return src, nil
}

func (p Program) download(ctx context.Context) (string, error) {
	at := p.Module + "@" + p.Version
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", at)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", at, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("go mod download %s: %w", at, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s", at, m.Error)
	}
	return m.Dir, nil
}

// image packages the binary alone, run as nobody: what scratch lacks
// (/tmp, a log directory) the Pod mounts.
func (p Program) image(ctx context.Context, dir, bin, ref string, log *progress.Logger) error {
	bctx := filepath.Join(dir, "image")
	os.RemoveAll(bctx)
	if err := os.MkdirAll(bctx, 0o755); err != nil {
		return err
	}
	if err := os.Link(bin, filepath.Join(bctx, p.Name)); err != nil {
		return err
	}
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY %[1]s /%[1]s\nUSER 65534:65534\nENTRYPOINT [\"/%[1]s\"]\n", p.Name)
	if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", ref, bctx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	return log.Run(ctx, cmd)
}

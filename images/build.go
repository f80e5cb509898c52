package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// Image is one sample image: a Dockerfile beside a Go program in images/.
type Image struct {
	// Repo is the image repository, e.g. nodrop/app.
	Repo string
	// Variant names the Dockerfile's setup (exec-form, shell-form, …).
	Variant string
	// Dir is the program's directory under images/.
	Dir string
	// Dockerfile is the file name within Dir.
	Dockerfile string
	// Debian says the Dockerfile builds FROM the Debian base image
	// (ARG BASE); the others are FROM scratch.
	Debian bool
	// Programs are the Go programs under images/ compiled into the build
	// context, each as a binary of its name. Default: Dir's own.
	Programs []string
}

func (img Image) programs() []string {
	if len(img.Programs) > 0 {
		return img.Programs
	}
	return []string{img.Dir}
}

// Catalogue lists every image nodrop builds.
var Catalogue = []Image{
	{Repo: "nodrop/app", Variant: "exec-form", Dir: "app", Dockerfile: "Dockerfile"},
	{Repo: "nodrop/app", Variant: "exec-form-v2", Dir: "app", Dockerfile: "Dockerfile.v2"},
	{Repo: "nodrop/app", Variant: "shell-form", Dir: "app", Dockerfile: "Dockerfile.shell-form", Debian: true},
	{Repo: "nodrop/app", Variant: "start-sh-no-exec", Dir: "app", Dockerfile: "Dockerfile.start-sh-no-exec", Debian: true},
	{Repo: "nodrop/app", Variant: "start-sh-exec", Dir: "app", Dockerfile: "Dockerfile.start-sh-exec", Debian: true},
	{Repo: "nodrop/app", Variant: "tini", Dir: "app", Dockerfile: "Dockerfile.tini", Debian: true},
	// The hot-upgradable sidecar proxy: two versions and Kruise's empty
	// placeholder (the same binary; SIDECARSET_VERSION=0 keeps it idle).
	{Repo: "nodrop/proxy", Variant: "proxy", Dir: "proxy", Dockerfile: "Dockerfile"},
	{Repo: "nodrop/proxy", Variant: "proxy-v2", Dir: "proxy", Dockerfile: "Dockerfile.v2"},
	{Repo: "nodrop/proxy", Variant: "proxy-empty", Dir: "proxy", Dockerfile: "Dockerfile.empty"},
	// Debian's nginx for in-place binary upgrades (USR2, WINCH, QUIT):
	// under nodrop's init, and the two negative controls.
	{Repo: "nodrop/nginx", Variant: "nginx-init", Dir: "nginx", Dockerfile: "Dockerfile", Debian: true, Programs: []string{"init"}},
	{Repo: "nodrop/nginx", Variant: "nginx-pid1", Dir: "nginx", Dockerfile: "Dockerfile.pid1", Debian: true, Programs: []string{"init"}},
	{Repo: "nodrop/nginx", Variant: "nginx-tini", Dir: "nginx", Dockerfile: "Dockerfile.tini", Debian: true, Programs: []string{"init"}},
	// A reloading proxy (HAProxy or nginx) whose upstreams follow a
	// Service's EndpointSlices.
	{Repo: "nodrop/lb", Variant: "lb", Dir: "lb", Dockerfile: "Dockerfile", Debian: true},
}

// Find returns the catalogue image of a variant.
func Find(variant string) (Image, bool) {
	for _, img := range Catalogue {
		if img.Variant == variant {
			return img, true
		}
	}
	return Image{}, false
}

// HasShell reports whether an image variant has a shell and coreutils
// (for exec probes or preStop hooks that run sleep).
func HasShell(variant string) bool {
	img, ok := Find(variant)
	return ok && img.Debian
}

// Built is an image in the local Docker engine.
type Built struct {
	Image
	Ref string
}

// Build builds every catalogue image offline with the local Docker engine
// and returns their references. Each is tagged by a hash of its build
// context (binary, Dockerfile, scripts), so an unchanged image is not
// rebuilt. src holds the sources (nodrop.Sources: go.mod, images/,
// rpcwire/); the programs are compiled with the local Go toolchain in a
// module written under cacheDir, so no source tree is needed.
func Build(ctx context.Context, src fs.FS, cacheDir string, log *progress.Logger) ([]Built, error) {
	module, err := writeModule(src, filepath.Join(cacheDir, "image-src"))
	if err != nil {
		return nil, err
	}
	contexts := map[string]string{}
	var built []Built
	base := ""
	for _, img := range Catalogue {
		if img.Debian && base == "" {
			var err error
			if base, err = EnsureBase(ctx, cacheDir, "", log); err != nil {
				return nil, err
			}
		}
		dir, ok := contexts[img.Dir]
		if !ok {
			var err error
			if dir, err = buildContext(ctx, src, module, cacheDir, img.Dir, img.programs(), log); err != nil {
				return nil, err
			}
			contexts[img.Dir] = dir
		}
		sum, err := hashDir(dir, img.Dockerfile)
		if err != nil {
			return nil, err
		}
		args := []string{"build", "-q", "-f", filepath.Join(dir, img.Dockerfile)}
		if img.Debian {
			sum = hashString(sum + base)
			args = append(args, "--build-arg", "BASE="+base)
		}
		ref := fmt.Sprintf("%s:%s-%s", img.Repo, img.Variant, sum[:12])
		built = append(built, Built{Image: img, Ref: ref})
		if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil {
			continue
		}
		step := log.Start("building image %s", ref)
		cmd := exec.Command("docker", append(args, "-t", ref, dir)...)
		// The legacy builder needs no registry for FROM scratch or for
		// a local base image.
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if err := log.Run(ctx, cmd); err != nil {
			return nil, step.Fail(err)
		}
		step.Done()
	}
	return built, nil
}

// writeModule writes the Go sources of src (every non-test .go file, with
// their directories) into a fresh module at dir whose go.mod has src's
// module path and go version and no requirement: the sample programs use
// the standard library and nodrop's own packages only, so they build
// offline and wherever nodrop runs.
func writeModule(src fs.FS, dir string) (string, error) {
	mod, err := fs.ReadFile(src, "go.mod")
	if err != nil {
		return "", fmt.Errorf("the image sources have no go.mod: %w", err)
	}
	var gomod strings.Builder
	for _, line := range strings.Split(string(mod), "\n") {
		if strings.HasPrefix(line, "module ") || strings.HasPrefix(line, "go ") {
			gomod.WriteString(line + "\n")
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod.String()), 0o644); err != nil {
		return "", err
	}
	err = fs.WalkDir(src, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		return copyOut(src, path, filepath.Join(dir, filepath.FromSlash(path)))
	})
	if err != nil {
		return "", fmt.Errorf("writing the image sources: %w", err)
	}
	return dir, nil
}

// buildContext compiles the Go programs into a fresh build context
// beside copies of images/<name>'s other files (Dockerfiles, scripts).
func buildContext(ctx context.Context, src fs.FS, module, cacheDir, name string, programs []string, log *progress.Logger) (string, error) {
	dir := filepath.Join(cacheDir, "image-contexts", name)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	entries, err := fs.ReadDir(src, "images/"+name)
	if err != nil {
		return "", fmt.Errorf("reading image sources %s: %w", name, err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		if err := copyOut(src, "images/"+name+"/"+e.Name(), filepath.Join(dir, e.Name())); err != nil {
			return "", err
		}
	}
	for _, prog := range programs {
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w", "-o", filepath.Join(dir, prog), "./images/"+prog)
		cmd.Dir = module
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off", "GOFLAGS=-mod=mod")
		if err := log.Run(ctx, cmd); err != nil {
			return "", fmt.Errorf("compiling %s for image %s: %w", prog, name, err)
		}
	}
	return dir, nil
}

// hashDir hashes the files of a build context that a Dockerfile may use:
// everything but the other Dockerfiles.
func hashDir(dir, dockerfile string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "Dockerfile") && e.Name() != dockerfile {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		st, _ := f.Stat()
		fmt.Fprintf(h, "%s %o\n", n, st.Mode().Perm())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashString(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// copyOut writes the file at path in src to dst. A script (a file that
// starts with #!) is made executable: an embedded file has no mode.
func copyOut(src fs.FS, path, dst string) error {
	data, err := fs.ReadFile(src, path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if strings.HasPrefix(string(data), "#!") {
		mode = 0o755
	}
	return os.WriteFile(dst, data, mode)
}

// SourceRoot finds nodrop's source tree from dir upwards.
func SourceRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/nodrop-dev/nodrop\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("nodrop's source tree (go.mod of github.com/nodrop-dev/nodrop) is not in %s or above; run nodrop from it", dir)
		}
	}
}

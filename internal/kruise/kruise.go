// Package kruise installs OpenKruise's kruise-manager on nodrop's kind
// cluster without a registry: built from the Go module proxy, packaged
// FROM scratch, loaded into the nodes, and installed from the module's
// own config/default tree with a small overlay (overlay.go), so that
// nodrop can run real SidecarSet hot upgrades.
package kruise

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// Version is the OpenKruise release nodrop installs.
const Version = "v1.8.0"

const (
	module    = "github.com/openkruise/kruise"
	imageRepo = "nodrop/kruise-manager"
	// Namespace and Deployment of the manager, from config/default.
	Namespace  = "kruise-system"
	Deployment = "kruise-controller-manager"
	// MutatingWebhook is the configuration whose caBundle the manager
	// fills in once its certificates exist.
	MutatingWebhook = "kruise-mutating-webhook-configuration"
)

// Options say where to cache builds and where progress goes.
type Options struct {
	CacheDir string
	Log      *progress.Logger
}

// Built is kruise-manager's image and the source tree it came from.
type Built struct {
	Image  string
	Source string
}

// Build compiles kruise-manager (once; the binary is cached) and builds
// its image unless Docker has it. The cold build takes about three
// minutes on two cores.
func Build(ctx context.Context, o Options) (*Built, error) {
	src, err := Source(ctx, o)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(o.CacheDir, "kruise")
	bin := filepath.Join(dir, "bin", "manager-"+Version)
	if _, err := os.Stat(bin); err != nil {
		step := o.Log.Start("compiling kruise-manager %s (about 3 minutes the first time)", Version)
		if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
			return nil, step.Fail(err)
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin+".tmp", ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
		if err := o.Log.Run(ctx, cmd); err != nil {
			return nil, step.Fail(err)
		}
		if err := os.Rename(bin+".tmp", bin); err != nil {
			return nil, step.Fail(err)
		}
		step.Done()
	}
	sum, err := fileHash(bin)
	if err != nil {
		return nil, err
	}
	ref := fmt.Sprintf("%s:%s-%s", imageRepo, Version, sum[:12])
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() != nil {
		step := o.Log.Start("building image %s (FROM scratch)", ref)
		if err := buildImage(ctx, dir, bin, ref, o.Log); err != nil {
			return nil, step.Fail(err)
		}
		step.Done()
	}
	return &Built{Image: ref, Source: src}, nil
}

// Source returns a writable copy of the OpenKruise module's source,
// fetched from the Go module proxy once.
func Source(ctx context.Context, o Options) (string, error) {
	dir := filepath.Join(o.CacheDir, "kruise")
	src := filepath.Join(dir, "src-"+Version)
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err == nil {
		return src, nil
	}
	step := o.Log.Start("fetching %s@%s from the Go module proxy", module, Version)
	modDir, err := downloadModule(ctx)
	if err != nil {
		return "", step.Fail(err)
	}
	os.RemoveAll(src + ".tmp")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", step.Fail(err)
	}
	// The module cache is read-only; building with -mod=mod may touch go.sum.
	if err := o.Log.Run(ctx, exec.Command("cp", "-r", modDir, src+".tmp")); err != nil {
		return "", step.Fail(err)
	}
	if err := o.Log.Run(ctx, exec.Command("chmod", "-R", "u+w", src+".tmp")); err != nil {
		return "", step.Fail(err)
	}
	if err := os.Rename(src+".tmp", src); err != nil {
		return "", step.Fail(err)
	}
	step.Done()
	return src, nil
}

func downloadModule(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module+"@"+Version)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", module, Version, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", module, Version, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s", module, Version, m.Error)
	}
	return m.Dir, nil
}

// buildImage packages the binary as the upstream Dockerfile does, minus
// the directories scratch lacks (the overlay mounts /tmp and /log).
func buildImage(ctx context.Context, dir, bin, ref string, log *progress.Logger) error {
	bctx := filepath.Join(dir, "image")
	os.RemoveAll(bctx)
	if err := os.MkdirAll(bctx, 0o755); err != nil {
		return err
	}
	if err := os.Link(bin, filepath.Join(bctx, "manager")); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY manager /manager\nUSER 65534:65534\nENTRYPOINT [\"/manager\"]\n"
	if err := os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "docker", "build", "-q", "-t", ref, bctx)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	return log.Run(ctx, cmd)
}

func fileHash(path string) (string, error) {
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

// waitPoll is the interval of the install's waits.
const waitPoll = 500 * time.Millisecond

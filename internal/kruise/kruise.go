// Package kruise installs OpenKruise's kruise-manager on nodrop's kind
// cluster without a registry: built from the Go module proxy and packaged
// FROM scratch (internal/gomodule), loaded into the nodes, and installed from the module's
// own config/default tree with a small overlay (overlay.go), so that
// nodrop can run real SidecarSet hot upgrades.
package kruise

import (
	"context"
	"time"

	"github.com/nodrop-dev/nodrop/internal/gomodule"
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
type Built = gomodule.Built

// manager is kruise-manager as the upstream Dockerfile packages it.
var manager = gomodule.Program{
	Module: module, Version: Version, Package: ".", Name: "manager",
	Repo: imageRepo, Dir: "kruise", About: "about 3 minutes",
}

// Build compiles kruise-manager (once; the binary is cached) and builds
// its image unless Docker has it. The cold build takes about three
// minutes on two cores.
func Build(ctx context.Context, o Options) (*Built, error) {
	return manager.Build(ctx, o.CacheDir, o.Log)
}

// Source returns a writable copy of the OpenKruise module's source,
// fetched from the Go module proxy once.
func Source(ctx context.Context, o Options) (string, error) {
	return manager.Source(ctx, o.CacheDir, o.Log)
}

// waitPoll is the interval of the install's waits.
const waitPoll = 500 * time.Millisecond

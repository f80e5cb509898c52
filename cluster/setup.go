package cluster

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/kruise"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
)

// SetupOptions describe everything `nodrop cluster up` does.
type SetupOptions struct {
	Options
	// KubernetesVersion of the offline node image when NodeImage is empty.
	KubernetesVersion string
	// Sources are the sample images' sources (default nodrop.Sources,
	// embedded in the binary).
	Sources fs.FS
	// WithKruise also builds and installs OpenKruise's kruise-manager
	// (SidecarSet hot upgrades), offline.
	WithKruise bool
}

// Ready is a cluster with nodrop's images loaded.
type Ready struct {
	*Cluster
	// Images maps each image variant to its reference.
	Images map[string]string
	// ConfigPath and NodeImage are what the cluster was made from.
	ConfigPath, NodeImage string
	// KruiseImage is the installed kruise-manager's image (WithKruise).
	KruiseImage string
}

// Setup builds the node image unless one is given, brings the cluster up
// (or reuses the same one), builds the sample images and loads them.
func Setup(ctx context.Context, o SetupOptions) (*Ready, error) {
	start := time.Now()
	if _, _, err := LoadConfig(o.ConfigPath); err != nil {
		return nil, err
	}
	if o.NodeImage == "" {
		img, err := nodeimage.Build(ctx, nodeimage.Options{KubernetesVersion: o.KubernetesVersion, CacheDir: o.StateDir, Log: o.Log})
		if errors.Is(err, nodeimage.ErrNotRoot) {
			return nil, badInput{err}
		}
		if err != nil {
			return nil, err
		}
		o.NodeImage = img
	}
	c, err := Up(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	src := o.Sources
	if src == nil {
		src = nodrop.Sources
	}
	built, err := images.Build(ctx, src, o.StateDir, o.Log)
	if err != nil {
		return nil, err
	}
	r := &Ready{Cluster: c, Images: map[string]string{}, ConfigPath: o.ConfigPath, NodeImage: o.NodeImage}
	var refs []string
	for _, b := range built {
		r.Images[b.Variant] = b.Ref
		refs = append(refs, b.Ref)
	}
	var kb *kruise.Built
	if o.WithKruise {
		if kb, err = kruise.Build(ctx, kruise.Options{CacheDir: o.StateDir, Log: o.Log}); err != nil {
			return nil, err
		}
		refs = append(refs, kb.Image)
		r.KruiseImage = kb.Image
	}
	if err := LoadImages(ctx, c.Name, refs, o.Log); err != nil {
		return nil, err
	}
	if kb != nil {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			return nil, err
		}
		if err := kruise.Install(ctx, rc, kb, o.Log); err != nil {
			return nil, err
		}
	}
	o.Log.Printf("✓ cluster %q is up (%s); node IPs %s\n  export KUBECONFIG=%s",
		c.Name, time.Since(start).Round(100*time.Millisecond), strings.Join(c.NodeIPs, " "), c.Kubeconfig)
	return r, nil
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/kruise"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/traefik"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/scenario"
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
	// WithIngress also builds and installs the Traefik ingress
	// controller, offline.
	WithIngress bool
	// Timeouts bound the waits of the installs and clean-ups (zero:
	// kube.DefaultTimeouts).
	Timeouts kube.Timeouts
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
	// Ingress is the installed ingress controller (WithIngress).
	Ingress *scenario.IngressController
}

// Setup builds the node image unless one is given, brings the cluster up
// (or reuses the same one), builds the sample images and loads them. The
// sample images and kruise-manager build while the node image is built
// and the cluster starts: on a new machine one's compile fills the
// other's waiting (debootstrap, kind's start).
func Setup(ctx context.Context, o SetupOptions) (*Ready, error) {
	start := time.Now()
	if _, _, err := LoadConfig(o.ConfigPath); err != nil {
		return nil, err
	}
	src := o.Sources
	if src == nil {
		src = nodrop.Sources
	}
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(bctx)
	var built []images.Built
	g.Go(func() (err error) {
		built, err = images.Build(gctx, src, o.StateDir, o.Log)
		return err
	})
	var kb *kruise.Built
	if o.WithKruise {
		g.Go(func() (err error) {
			kb, err = kruise.Build(gctx, kruise.Options{CacheDir: o.StateDir, Log: o.Log})
			return err
		})
	}
	var ingressImage string
	if o.WithIngress {
		g.Go(func() (err error) {
			ingressImage, err = traefik.Build(gctx, o.StateDir, o.Log)
			return err
		})
	}
	c, err := o.up(ctx)
	if err != nil {
		cancel()
		_ = g.Wait()
		return nil, err
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	r := &Ready{Cluster: c, Images: map[string]string{}, ConfigPath: o.ConfigPath, NodeImage: o.NodeImage}
	var refs []string
	for _, b := range built {
		r.Images[b.Variant] = b.Ref
		refs = append(refs, b.Ref)
	}
	if kb != nil {
		refs = append(refs, kb.Image)
		r.KruiseImage = kb.Image
	}
	if ingressImage != "" {
		refs = append(refs, ingressImage)
	}
	if err := LoadImages(ctx, c.Name, refs, o.Log); err != nil {
		return nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if kb != nil {
		if err := kruise.Install(ctx, rc, kb, o.Log); err != nil {
			return nil, err
		}
	}
	if ingressImage != "" {
		if err := traefik.Install(ctx, rc, ingressImage, o.Log, o.timeouts()); err != nil {
			return nil, err
		}
		r.Ingress = traefik.Controller()
	}
	if err := deleteOrphans(ctx, rc, o.Log, o.timeouts()); err != nil {
		return nil, err
	}
	// A run killed during a drain could not uncordon its node.
	uncordoned, err := chaos.Uncordon(ctx, c.Client)
	if err != nil {
		return nil, fmt.Errorf("undoing faults left by killed runs: %w", err)
	}
	if len(uncordoned) > 0 {
		o.Log.Printf("✓ uncordoned what a run that was killed left cordoned: %s", strings.Join(uncordoned, ", "))
	}
	o.Log.Printf("✓ cluster %q is up (%s); node IPs %s\n  export KUBECONFIG=%s",
		c.Name, time.Since(start).Round(100*time.Millisecond), strings.Join(c.NodeIPs, " "), c.Kubeconfig)
	return r, nil
}

func (o *SetupOptions) timeouts() kube.Timeouts {
	if o.Timeouts == (kube.Timeouts{}) {
		return kube.DefaultTimeouts()
	}
	return o.Timeouts
}

// up builds the node image unless one is given and brings the cluster up.
func (o *SetupOptions) up(ctx context.Context) (*Cluster, error) {
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
	return Up(ctx, o.Options)
}

// deleteOrphans deletes the namespaces of runs on this host that were
// killed before they could (kube.Orphans): their pods would otherwise
// take CPU from every run after them.
func deleteOrphans(ctx context.Context, rc *rest.Config, log *progress.Logger, t kube.Timeouts) error {
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	names, err := kube.DeleteOrphans(ctx, client, t)
	if len(names) > 0 && err == nil {
		log.Printf("✓ deleted %d namespace(s) left by runs that were killed: %s", len(names), strings.Join(names, " "))
	}
	if err != nil {
		return fmt.Errorf("deleting namespaces left by killed runs: %w", err)
	}
	return nil
}

// InstallIngress builds the Traefik ingress controller (once; cached),
// loads it into the cluster's nodes and installs it, unless it runs
// there already.
func InstallIngress(ctx context.Context, name, stateDir string, rc *rest.Config, log *progress.Logger, t kube.Timeouts) (*scenario.IngressController, error) {
	image, err := traefik.Build(ctx, stateDir, log)
	if err != nil {
		return nil, err
	}
	if err := LoadImages(ctx, name, []string{image}, log); err != nil {
		return nil, err
	}
	if err := traefik.Install(ctx, rc, image, log, t); err != nil {
		return nil, err
	}
	return traefik.Controller(), nil
}

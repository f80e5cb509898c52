// Package nodeimage builds a kind node image offline: Kubernetes, etcd and
// CoreDNS compiled from the Go module proxy, a Debian bookworm root file
// system from Debian's packages (debootstrap), control-plane images
// assembled from files without a registry, and a static bridge CNI.
//
// The image is tagged by a hash of its inputs (versions, package list and
// this package's own source, the recipe), and every intermediate artifact
// (binaries, root file system, component images) is cached under the cache
// directory by its own inputs, so an unchanged rebuild takes seconds.
package nodeimage

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// DefaultKubernetesVersion is the Kubernetes release nodrop builds.
const DefaultKubernetesVersion = "v1.37.2"

// KindVersion is the kind release whose node base files the image uses;
// it must match the sigs.k8s.io/kind module nodrop is built with.
const KindVersion = "v0.33.0"

// Repository is the image repository of built node images.
const Repository = "nodrop/node"

// Packages are the Debian packages of the node's root file system.
var Packages = []string{
	"systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
	"iptables", "nftables", "conntrack", "iproute2", "ethtool", "socat", "util-linux", "mount",
	"kmod", "libseccomp2", "pigz", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
}

// Suite is the Debian release of the root file system.
const Suite = "bookworm"

//go:embed *.go assets
var recipe embed.FS

// Options control a build.
type Options struct {
	// KubernetesVersion is a release tag such as v1.37.2.
	KubernetesVersion string
	// CacheDir holds every intermediate artifact.
	CacheDir string
	// Mirror is the Debian mirror for debootstrap; empty means the one
	// this host's apt uses.
	Mirror string
	// Log shows progress; nil is silent.
	Log *progress.Logger
}

func (o Options) withDefaults() Options {
	if o.KubernetesVersion == "" {
		o.KubernetesVersion = DefaultKubernetesVersion
	}
	return o
}

// Tag is the image reference a build with these options produces.
func Tag(o Options) string {
	o = o.withDefaults()
	return fmt.Sprintf("%s:%s-%s", Repository, o.KubernetesVersion, inputsHash(o)[:12])
}

// inputsHash covers everything that decides the image's content.
func inputsHash(o Options) string {
	h := sha256.New()
	fmt.Fprintf(h, "k8s=%s\nkind=%s\nsuite=%s\npackages=%s\n", o.KubernetesVersion, KindVersion, Suite, strings.Join(Packages, ","))
	var names []string
	fs.WalkDir(recipe, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, "_test.go") {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := recipe.ReadFile(n)
		fmt.Fprintf(h, "%s %x\n", n, sha256.Sum256(b))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ErrNotRoot is returned when the build needs root (debootstrap, chroot).
var ErrNotRoot = errors.New("building the node image needs root (debootstrap and chroot)")

// Build makes sure the node image exists in the local Docker engine and
// returns its reference. With every artifact cached, it only checks.
func Build(ctx context.Context, o Options) (string, error) {
	o = o.withDefaults()
	tag := Tag(o)
	d := docker{log: o.Log}
	if d.imageExists(ctx, tag) {
		o.Log.Printf("✓ node image %s is already built", tag)
		return tag, nil
	}
	if os.Geteuid() != 0 {
		return "", ErrNotRoot
	}
	if o.CacheDir == "" {
		return "", errors.New("nodeimage: no cache directory")
	}
	// One build of the node image at a time on this machine: two would
	// debootstrap into the same scratch folders. Whoever waited finds it
	// built.
	unlock, err := cachedir.Lock(ctx, o.CacheDir, "node-image", o.Log.Printf)
	if err != nil {
		return "", err
	}
	defer unlock()
	if d.imageExists(ctx, tag) {
		o.Log.Printf("✓ node image %s was built meanwhile", tag)
		return tag, nil
	}
	b := &builder{o: o, d: d, cache: o.CacheDir}
	if err := b.build(ctx, tag); err != nil {
		return "", err
	}
	return tag, nil
}

type builder struct {
	o     Options
	d     docker
	cache string

	bins      binaries
	rootfs    string
	images    []componentImage
	imagesTar string
}

func (b *builder) path(elem ...string) string {
	return filepath.Join(append([]string{b.cache}, elem...)...)
}

func (b *builder) build(ctx context.Context, tag string) error {
	// The Kubernetes compile and debootstrap take minutes each and use
	// different resources (CPU, network), so they run side by side.
	// The first to fail stops the other.
	both, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var binErr, rootErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		if b.bins, binErr = b.buildBinaries(both); binErr != nil {
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if b.rootfs, rootErr = b.buildRootfs(both); rootErr != nil {
			cancel()
		}
	}()
	wg.Wait()
	if err := errors.Join(binErr, rootErr); err != nil {
		return err
	}
	if err := b.buildComponentImages(ctx); err != nil {
		return err
	}
	return b.assemble(ctx, tag)
}

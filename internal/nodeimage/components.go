package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const pathEnv = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

type componentImage struct {
	ref string
	img v1.Image
}

// buildComponentImages assembles the control-plane, etcd, CoreDNS,
// kube-proxy and pause images from the compiled binaries, tagged as
// kubeadm expects, into one docker-archive tarball for containerd.
func (b *builder) buildComponentImages(ctx context.Context) error {
	bins := b.bins
	refs := make([]string, 0, len(bins.imageTags))
	for _, r := range bins.imageTags {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	h := sha256.New()
	fmt.Fprintf(h, "%q\n%s\n%s\n%s\n%s\n", refs, bins.kube, bins.etcd, bins.coredns, bins.helpers)
	for _, f := range []string{"components.go", "layer.go"} {
		src, _ := recipe.ReadFile(f)
		h.Write(src)
	}
	fmt.Fprintf(h, "%s\n", b.rootfs)
	for _, dir := range []string{bins.kube, bins.etcd, bins.coredns, bins.helpers} {
		stamp, _ := os.ReadFile(filepath.Join(dir, ".nodrop-key"))
		h.Write(stamp)
	}
	out := b.path("images", "components-"+hex.EncodeToString(h.Sum(nil))[:16]+".tar")
	b.imagesTar = out
	if _, err := os.Stat(out); err == nil {
		b.o.Log.Printf("✓ component images: cached in %s", out)
		return nil
	}
	step := b.o.Log.Start("assembling %d component images without a registry", len(refs))
	base := b.skeleton()
	byRef := map[name.Reference]v1.Image{}
	add := func(component string, files Files, cfg ImageConfig) error {
		ref := bins.imageTags[component]
		tag, err := name.NewTag(ref)
		if err != nil {
			return err
		}
		for p, f := range base {
			if _, ok := files[p]; !ok {
				files[p] = f
			}
		}
		img, err := Image(files, cfg)
		if err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		byRef[tag] = img
		return nil
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		files := Files{}
		files.AddFile("/usr/local/bin/"+c, filepath.Join(bins.kube, c), 0o755)
		if err := add(c, files, ImageConfig{Entrypoint: []string{"/usr/local/bin/" + c}, Env: []string{pathEnv}}); err != nil {
			return step.Fail(err)
		}
	}
	proxy, err := b.kubeProxyFiles(ctx)
	if err != nil {
		return step.Fail(err)
	}
	if err := add("kube-proxy", proxy, ImageConfig{Entrypoint: []string{"/usr/local/bin/kube-proxy"}, Env: []string{pathEnv}}); err != nil {
		return step.Fail(err)
	}
	etcd := Files{}
	etcd.AddFile("/usr/local/bin/etcd", filepath.Join(bins.etcd, "etcd"), 0o755)
	etcd.AddDir("/var/lib/etcd", 0o700)
	if err := add("etcd", etcd, ImageConfig{Entrypoint: []string{"/usr/local/bin/etcd"}, Env: []string{pathEnv}}); err != nil {
		return step.Fail(err)
	}
	coredns := Files{}
	coredns.AddFile("/coredns", filepath.Join(bins.coredns, "coredns"), 0o755)
	if err := add("coredns", coredns, ImageConfig{Entrypoint: []string{"/coredns"}, Env: []string{pathEnv}}); err != nil {
		return step.Fail(err)
	}
	pause := Files{}
	pause.AddFile("/pause", filepath.Join(bins.helpers, "pause"), 0o755)
	if err := add("pause", pause, ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}); err != nil {
		return step.Fail(err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return step.Fail(err)
	}
	if err := tarball.MultiRefWriteToFile(out+".tmp", byRef); err != nil {
		return step.Fail(err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return step.Fail(err)
	}
	step.Done(strings.Join(refs, " "))
	return nil
}

// skeleton is what every component image has: users, name service
// config, CA certificates and a /tmp.
func (b *builder) skeleton() Files {
	f := Files{}
	f.AddData("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644)
	f.AddData("/etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644)
	for _, p := range []string{"/etc/nsswitch.conf", "/etc/protocols", "/etc/services", "/etc/ssl/certs/ca-certificates.crt"} {
		if _, err := os.Stat(filepath.Join(b.rootfs, p)); err == nil {
			f.AddFile(p, filepath.Join(b.rootfs, p), 0o644)
		}
	}
	f.AddDir("/tmp", 0o777|fs.ModeSticky)
	f.AddDir("/run", 0o755)
	f.AddLink("/var/run", "../run")
	return f
}

// kubeProxyFiles is kube-proxy with the node's iptables (both backends)
// and conntrack, their shared libraries and xtables extensions, and the
// wrapper that picks the backend the node uses.
func (b *builder) kubeProxyFiles(ctx context.Context) (Files, error) {
	root := b.rootfs
	f := Files{}
	f.AddFile("/usr/local/bin/kube-proxy", filepath.Join(b.bins.kube, "kube-proxy"), 0o755)
	// Debian is merged-/usr: the top-level directories are links.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		f.AddLink("/"+d, "usr/"+d)
	}
	programs := []string{"/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi", "/usr/sbin/conntrack"}
	extensions, _ := filepath.Glob(filepath.Join(root, "usr/lib/*-linux-gnu/xtables/*.so"))
	var needLibs []string
	for _, p := range programs {
		f.AddFile(p, filepath.Join(root, p), 0o755)
		needLibs = append(needLibs, p)
	}
	for _, e := range extensions {
		rel := "/" + strings.TrimPrefix(e, root+"/")
		f.AddFile(rel, e, 0o644)
		needLibs = append(needLibs, rel)
	}
	for _, p := range needLibs {
		libs, err := b.sharedLibraries(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, l := range libs {
			dir, err := resolveInRoot(root, path.Dir(l))
			if err != nil {
				return nil, err
			}
			real, err := resolveInRoot(root, l)
			if err != nil {
				return nil, err
			}
			f.AddFile(path.Join(dir, path.Base(l)), filepath.Join(root, real), 0o755)
		}
	}
	f.AddFile("/usr/sbin/iptables-wrapper", filepath.Join(b.bins.helpers, "iptables-wrapper"), 0o755)
	for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		f.AddLink("/usr/sbin/"+n, "iptables-wrapper")
		f.AddLink("/usr/sbin/"+strings.Replace(n, "tables", "tables-nft", 1), "xtables-nft-multi")
		f.AddLink("/usr/sbin/"+strings.Replace(n, "tables", "tables-legacy", 1), "xtables-legacy-multi")
	}
	return f, nil
}

// sharedLibraries lists the libraries a program in the root file system
// loads, as ldd inside it reports them.
func (b *builder) sharedLibraries(ctx context.Context, program string) ([]string, error) {
	out, err := b.o.Log.Output(ctx, exec.Command("chroot", b.rootfs, "ldd", program))
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", program, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "/"):
			libs = append(libs, fields[2])
		case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
			libs = append(libs, fields[0]) // the dynamic loader
		}
	}
	return libs, nil
}

// resolveInRoot resolves symlinks in p as if root were "/".
func resolveInRoot(root, p string) (string, error) {
	parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for hops := 0; len(parts) > 0; {
		next := path.Join(cur, parts[0])
		parts = parts[1:]
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("too many links resolving %s", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if !path.IsAbs(target) {
			target = path.Join(cur, target)
		}
		parts = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts...)
		cur = "/"
	}
	return cur, nil
}

package nodeimage

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// stopSignal is how kind stops a node: systemd's clean shutdown signal.
const stopSignal = "SIGRTMIN+3"

// assemble makes the node image: root file system plus Kubernetes files
// imported into Docker, the component images imported into the node's
// containerd inside a build container, committed, and given kind's stop
// signal.
func (b *builder) assemble(ctx context.Context, tag string) error {
	step := b.o.Log.Start("assembling node image %s", tag)
	overlay, err := b.nodeFiles()
	if err != nil {
		return step.Fail(err)
	}
	base := tag + "-base"
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeRootfsTar(pw, b.rootfs, overlay)) }()
	importCmd := b.d.cmd(pr, "import",
		"--change", "ENV container=docker",
		"--change", `ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]`,
		"-", base)
	if err := b.o.Log.Run(ctx, importCmd); err != nil {
		pr.CloseWithError(err)
		return step.Fail(fmt.Errorf("importing the root file system: %w", err))
	}
	defer b.d.run(context.WithoutCancel(ctx), "image", "rm", base)

	suffix := make([]byte, 4)
	rand.Read(suffix)
	cid := "nodrop-node-build-" + hex.EncodeToString(suffix)
	if err := b.d.run(ctx, "run", "-d", "--name", cid, "--entrypoint", "sleep", base, "infinity"); err != nil {
		return step.Fail(fmt.Errorf("starting the build container: %w", err))
	}
	defer b.d.run(context.WithoutCancel(ctx), "rm", "-f", "-v", cid)

	// containerd inside the build container stores the images where the
	// node's containerd will find them; --no-unpack as kind does, since
	// snapshots cannot be made without privileges.
	if err := b.d.run(ctx, "exec", cid, "sh", "-c", "containerd >/var/log/containerd-build.log 2>&1 &"); err != nil {
		return step.Fail(err)
	}
	if err := b.waitContainerd(ctx, cid); err != nil {
		return step.Fail(err)
	}
	images, err := os.Open(b.imagesTar)
	if err != nil {
		return step.Fail(err)
	}
	defer images.Close()
	err = b.o.Log.Run(ctx, b.d.cmd(images, "exec", "-i", cid, "ctr", "--namespace=k8s.io", "images", "import",
		"--label=io.cri-containerd.pinned=pinned", "--all-platforms", "--no-unpack", "--digests", "-"))
	if err != nil {
		return step.Fail(fmt.Errorf("importing component images into containerd: %w", err))
	}
	listed, err := b.d.output(ctx, "exec", cid, "ctr", "--namespace=k8s.io", "images", "list", "-q")
	if err != nil {
		return step.Fail(err)
	}
	for _, ref := range b.bins.imageTags {
		if !strings.Contains(string(listed), ref+"\n") {
			return step.Fail(fmt.Errorf("containerd lacks %s after import; it has:\n%s", ref, listed))
		}
	}
	stopCtrd := "kill $(pidof containerd); for i in $(seq 50); do pidof containerd >/dev/null || break; sleep 0.1; done; rm -f /var/log/containerd-build.log"
	if err := b.d.run(ctx, "exec", cid, "sh", "-c", stopCtrd); err != nil {
		return step.Fail(err)
	}
	if err := b.d.run(ctx, "commit",
		"--change", `ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]`,
		"--change", "ENV container=docker",
		"--change", "LABEL io.nodrop.node-image.inputs="+inputsHash(b.o),
		cid, tag); err != nil {
		return step.Fail(fmt.Errorf("committing the node image: %w", err))
	}
	// Neither docker import nor commit can set STOPSIGNAL; a build whose
	// only instruction is metadata needs no registry.
	dockerfile := strings.NewReader(fmt.Sprintf("FROM %s\nSTOPSIGNAL %s\n", tag, stopSignal))
	build := b.d.cmd(dockerfile, "build", "-q", "-t", tag, "-")
	build.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if err := b.o.Log.Run(ctx, build); err != nil {
		b.d.run(context.WithoutCancel(ctx), "image", "rm", tag)
		return step.Fail(fmt.Errorf("setting STOPSIGNAL: %w", err))
	}
	step.Done()
	return nil
}

func (b *builder) waitContainerd(ctx context.Context, cid string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := b.d.cmd(nil, "exec", cid, "ctr", "version").Run()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := b.d.output(ctx, "exec", cid, "cat", "/var/log/containerd-build.log")
			return fmt.Errorf("containerd in the build container did not start within 30 s: %v\n%s", err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// nodeFiles are the files the node image adds to the root file system.
func (b *builder) nodeFiles() (Files, error) {
	f := Files{}
	for _, c := range []string{"kubeadm", "kubelet", "kubectl"} {
		f.AddFile("/usr/bin/"+c, filepath.Join(b.bins.kube, c), 0o755)
	}
	f.AddData("/kind/version", []byte(b.o.KubernetesVersion+"\n"), 0o644)
	for src, dst := range map[string]string{
		"assets/default-cni.yaml":          "/kind/manifests/default-cni.yaml",
		"assets/default-storage.yaml":      "/kind/manifests/default-storage.yaml",
		"assets/10-nodrop-bridge.conflist": "/etc/cni/net.d/10-nodrop-bridge.conflist",
	} {
		data, err := recipe.ReadFile(src)
		if err != nil {
			return nil, err
		}
		f.AddData(dst, data, 0o644)
	}
	conf, err := os.ReadFile(filepath.Join(b.rootfs, "etc/containerd/config.toml"))
	if err != nil {
		return nil, err
	}
	conf, err = containerdConfig(conf, b.bins.imageTags["pause"])
	if err != nil {
		return nil, err
	}
	f.AddData("/etc/containerd/config.toml", conf, 0o644)
	return f, nil
}

var (
	sandboxImage = regexp.MustCompile(`(?m)^(\s*)sandbox_image\s*=.*$`)
	restrictOOM  = regexp.MustCompile(`(?m)^(\s*)restrict_oom_score_adj\s*=.*$`)
)

// containerdConfig adapts kind's containerd config: the sandbox image is
// the pause image kubeadm expects, and pods' oom_score_adj is clamped to
// containerd's own, since without CAP_SYS_RESOURCE runc cannot lower it
// (kubelet asks -997 for critical pods), as for rootless kind.
func containerdConfig(conf []byte, pause string) ([]byte, error) {
	if !sandboxImage.Match(conf) || !restrictOOM.Match(conf) {
		return nil, fmt.Errorf("kind's containerd config has no sandbox_image or restrict_oom_score_adj line")
	}
	conf = sandboxImage.ReplaceAll(conf, []byte(`${1}sandbox_image = "`+pause+`"`))
	return restrictOOM.ReplaceAll(conf, []byte("${1}restrict_oom_score_adj = true")), nil
}

// writeRootfsTar writes the root file system as a tar stream, with the
// overlay's files replacing or adding to it.
func writeRootfsTar(w io.Writer, root string, overlay Files) error {
	tw := tar.NewWriter(w)
	replaced := map[string]bool{}
	for p := range overlay {
		replaced[strings.TrimPrefix(path.Clean(p), "/")] = true
	}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || replaced[filepath.ToSlash(rel)] {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name, h.Uname, h.Gname, h.Format = filepath.ToSlash(rel), "", "", tar.FormatPAX
		if d.IsDir() {
			h.Name += "/"
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && info.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(h)
			}
			seen[key] = h.Name
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fh.Close()
		_, err = io.Copy(tw, fh)
		return err
	})
	if err != nil {
		return err
	}
	err = overlay.writeEntries(tw, func(dir string) bool {
		_, err := os.Lstat(filepath.Join(root, dir))
		return err == nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

package nodeimage

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
)

// buildRootfs returns a directory with the node's Debian root file system
// and kind's node base files (systemd units, entrypoint, containerd
// config), as kind's base image Dockerfile lays them out.
func (b *builder) buildRootfs(ctx context.Context) (string, error) {
	mirror := b.o.Mirror
	if mirror == "" {
		mirror = hostMirror()
	}
	kindFiles, err := b.kindBaseFiles(ctx)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", Suite, strings.Join(Packages, ","), KindVersion)
	if src, err := recipe.ReadFile("rootfs.go"); err == nil {
		h.Write(src)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := b.path("rootfs", key)
	done := dir + ".done"
	if _, err := os.Stat(done); err == nil {
		b.o.Log.Printf("✓ Debian %s root file system: cached in %s", Suite, dir)
		return dir, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap is not installed (apt-get install debootstrap, or run hack/ensure-docker.sh): %w", err)
	}
	step := b.o.Log.Start("debootstrap Debian %s with %d packages from %s", Suite, len(Packages), mirror)
	tmp := dir + ".tmp"
	if err := cachedir.RemoveScratch(tmp); err != nil {
		return "", step.Fail(err)
	}
	// A build that fails leaves nothing mounted or half-made behind.
	defer cachedir.RemoveScratch(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", step.Fail(err)
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+strings.Join(Packages, ","), Suite, tmp, mirror)
	if err := b.o.Log.Run(ctx, cmd); err != nil {
		return "", step.Fail(err)
	}
	if err := prepareRootfs(ctx, b, tmp, kindFiles); err != nil {
		return "", step.Fail(err)
	}
	if err := cachedir.RemoveScratch(dir); err != nil {
		return "", step.Fail(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", step.Fail(err)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", step.Fail(err)
	}
	step.Done()
	return dir, nil
}

// kindBaseFiles is kind's images/base/files tree in the module cache.
func (b *builder) kindBaseFiles(ctx context.Context) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/kind@"+KindVersion)
	cmd.Dir = os.TempDir()
	cmd.Env = goEnv()
	out, err := b.o.Log.Output(ctx, cmd)
	if err != nil {
		return "", fmt.Errorf("downloading kind %s for its node base files: %w", KindVersion, err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("reading go mod download output: %v", err)
	}
	return filepath.Join(info.Dir, "images", "base", "files"), nil
}

// prepareRootfs does what kind's base Dockerfile does after installing
// packages.
func prepareRootfs(ctx context.Context, b *builder, root, kindFiles string) error {
	// kind's base files, executables where kind makes them so.
	err := filepath.WalkDir(kindFiles, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(kindFiles, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		mode := fs.FileMode(0o644)
		if strings.HasPrefix(rel, "usr/local/bin/") || strings.HasPrefix(rel, "kind/bin/") {
			mode = 0o755
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		os.Remove(dst)
		return os.WriteFile(dst, data, mode)
	})
	if err != nil {
		return fmt.Errorf("copying kind base files: %w", err)
	}
	// kind expects containerd and its shim in /usr/local/bin, runc in
	// /usr/local/sbin and CNI plugins in /opt/cni/bin.
	for _, name := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "containerd-shim"} {
		if _, err := os.Stat(filepath.Join(root, "usr/bin", name)); err == nil {
			link := filepath.Join(root, "usr/local/bin", name)
			os.Remove(link)
			if err := os.Symlink("/usr/bin/"+name, link); err != nil {
				return err
			}
		}
	}
	os.MkdirAll(filepath.Join(root, "usr/local/sbin"), 0o755)
	os.Remove(filepath.Join(root, "usr/local/sbin/runc"))
	if err := os.Symlink("/usr/sbin/runc", filepath.Join(root, "usr/local/sbin/runc")); err != nil {
		return err
	}
	if err := copyDir(filepath.Join(root, "usr/lib/cni"), filepath.Join(root, "opt/cni/bin")); err != nil {
		return fmt.Errorf("installing CNI plugins: %w", err)
	}

	// systemd as kind's Dockerfile trims it for a container.
	for _, pattern := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*",
		"etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*",
		"lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*",
		"lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, pattern))
		for _, m := range matches {
			os.Remove(m)
		}
	}
	if err := appendFile(filepath.Join(root, "etc/systemd/journald.conf"), "ReadKMsg=no\n"); err != nil {
		return err
	}
	os.Remove(filepath.Join(root, "sbin/init"))
	if err := os.Symlink("/usr/lib/systemd/systemd", filepath.Join(root, "sbin/init")); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"systemctl", "enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"},
		{"systemctl", "mask", "systemd-binfmt.service"},
	} {
		if err := b.o.Log.Run(ctx, exec.Command("chroot", append([]string{root}, args...)...)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "etc/kubernetes/manifests"), 0o755); err != nil {
		return err
	}

	// containerd's base OCI spec for pods, as kind writes it: the
	// default spec with kind's createContainer hook and no rlimits.
	spec, err := b.o.Log.Output(ctx, exec.Command("chroot", root, "/usr/bin/ctr", "oci", "spec"))
	if err != nil {
		return fmt.Errorf("generating cri-base.json: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(spec, &m); err != nil {
		return fmt.Errorf("parsing ctr oci spec: %w", err)
	}
	hooks, _ := m["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	create, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(create, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	m["hooks"] = hooks
	if p, ok := m["process"].(map[string]any); ok {
		delete(p, "rlimits")
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/containerd/cri-base.json"), out, 0o644); err != nil {
		return err
	}

	for _, glob := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*"} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			os.RemoveAll(m)
		}
	}
	return os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444)
}

// hostMirror is the Debian mirror this host's apt uses.
func hostMirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:" && !strings.Contains(fields[1], "security"):
				fh.Close()
				return fields[1]
			case len(fields) >= 3 && fields[0] == "deb" && !strings.Contains(fields[1], "security"):
				fh.Close()
				return fields[1]
			}
		}
		fh.Close()
	}
	return "http://deb.debian.org/debian"
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyDir copies the regular files and symlinks of src into dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
	})
}

package nodeimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
)

// kubeCommands are the Kubernetes binaries of a node.
var kubeCommands = []string{"kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// binaries are the compiled programs of the node image, each a file in
// its directory, and the image tags kubeadm expects for them.
type binaries struct {
	kube, etcd, coredns, helpers string // directories
	// imageTags maps component (kube-apiserver, etcd, coredns, pause, …)
	// to the full reference kubeadm will ask containerd for.
	imageTags map[string]string
}

func (b *builder) buildBinaries(ctx context.Context) (binaries, error) {
	var bins binaries
	var err error
	if bins.kube, err = b.buildKubernetes(ctx); err != nil {
		return bins, err
	}
	if bins.imageTags, err = b.kubeadmImages(ctx, filepath.Join(bins.kube, "kubeadm")); err != nil {
		return bins, err
	}
	etcdTag := tagOf(bins.imageTags["etcd"])
	etcdVersion := "v" + strings.SplitN(etcdTag, "-", 2)[0] // 3.7.0-0 → v3.7.0
	if bins.etcd, err = b.goBuild(ctx, goBuild{
		name:    "etcd " + etcdVersion,
		dir:     "etcd-" + etcdVersion,
		gets:    []string{"go.etcd.io/etcd/server/v3@" + etcdVersion},
		builds:  map[string]string{"etcd": "go.etcd.io/etcd/server/v3"},
		ldflags: "-s -w",
	}); err != nil {
		return bins, err
	}
	corednsVersion := tagOf(bins.imageTags["coredns"])
	if bins.coredns, err = b.goBuild(ctx, goBuild{
		name:    "CoreDNS " + corednsVersion,
		dir:     "coredns-" + corednsVersion,
		gets:    []string{"github.com/coredns/coredns@" + corednsVersion},
		builds:  map[string]string{"coredns": "github.com/coredns/coredns"},
		ldflags: "-s -w",
	}); err != nil {
		return bins, err
	}
	bins.helpers, err = b.buildHelpers(ctx)
	return bins, err
}

// buildKubernetes compiles the seven Kubernetes commands at the pinned
// release, with the version variables Kubernetes' own build sets.
func (b *builder) buildKubernetes(ctx context.Context) (string, error) {
	v := b.o.KubernetesVersion
	major, minor, ok := parseVersion(v)
	if !ok {
		return "", fmt.Errorf("kubernetes version %q: want vMAJOR.MINOR.PATCH", v)
	}
	// k8s.io/kubernetes replaces its staging modules with ./staging paths
	// that are not in its module zip; point each at its published
	// release (v0.MINOR.PATCH) instead.
	staging, err := b.stagingModules(ctx, v)
	if err != nil {
		return "", err
	}
	var replaces strings.Builder
	for _, m := range staging {
		fmt.Fprintf(&replaces, "\t%s => %s v0%s\n", m, m, strings.TrimPrefix(v, "v"+major))
	}
	ld := []string{"-s", "-w"}
	for _, p := range []string{"k8s.io/client-go/pkg/version", "k8s.io/component-base/version"} {
		ld = append(ld,
			"-X", p+".gitVersion="+v, "-X", p+".gitMajor="+major, "-X", p+".gitMinor="+minor,
			"-X", p+".gitCommit=0000000000000000000000000000000000000000", "-X", p+".gitTreeState=clean",
			"-X", p+".buildDate=1970-01-01T00:00:00Z")
	}
	builds := map[string]string{}
	var gets []string
	for _, c := range kubeCommands {
		builds[c] = "k8s.io/kubernetes/cmd/" + c
		gets = append(gets, "k8s.io/kubernetes/cmd/"+c+"@"+v)
	}
	return b.goBuild(ctx, goBuild{
		name:    "Kubernetes " + v + " (" + strings.Join(kubeCommands, ", ") + ")",
		dir:     "kubernetes-" + v,
		goMod:   "replace (\n" + replaces.String() + ")\n",
		gets:    gets,
		builds:  builds,
		ldflags: strings.Join(ld, " "),
	})
}

// stagingModules lists the modules k8s.io/kubernetes replaces with
// ./staging directories, read from its go.mod.
func (b *builder) stagingModules(ctx context.Context, version string) ([]string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", "k8s.io/kubernetes@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = goEnv()
	out, err := b.o.Log.Output(ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("downloading k8s.io/kubernetes@%s: %w", version, err)
	}
	var info struct{ GoMod string }
	if err := json.Unmarshal(out, &info); err != nil || info.GoMod == "" {
		return nil, fmt.Errorf("reading go mod download output: %v", err)
	}
	raw, err := os.ReadFile(info.GoMod)
	if err != nil {
		return nil, err
	}
	mf, err := modfile.Parse(info.GoMod, raw, nil)
	if err != nil {
		return nil, err
	}
	var mods []string
	for _, r := range mf.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") {
			mods = append(mods, r.Old.Path)
		}
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("k8s.io/kubernetes@%s: no staging modules in its go.mod", version)
	}
	return mods, nil
}

// kubeadmImages asks the built kubeadm which images it will use.
func (b *builder) kubeadmImages(ctx context.Context, kubeadm string) (map[string]string, error) {
	out, err := b.o.Log.Output(ctx, exec.Command(kubeadm, "config", "images", "list", "--kubernetes-version", b.o.KubernetesVersion))
	if err != nil {
		return nil, fmt.Errorf("listing kubeadm's images: %w", err)
	}
	tags := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		ref := strings.TrimSpace(sc.Text())
		if ref == "" {
			continue
		}
		name := ref[:strings.LastIndex(ref, ":")]
		tags[path.Base(name)] = ref
	}
	for _, want := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause"} {
		if tags[want] == "" {
			return nil, fmt.Errorf("kubeadm config images list names no %s image:\n%s", want, out)
		}
	}
	return tags, nil
}

// buildHelpers compiles nodrop's own small node programs (pause,
// iptables-wrapper) from the sources embedded in this package.
func (b *builder) buildHelpers(ctx context.Context) (string, error) {
	sum := sha256.New()
	builds := map[string]string{}
	entries, err := fs.ReadDir(recipe, "assets")
	if err != nil {
		return "", err
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() {
			builds[e.Name()] = "./" + e.Name()
			files = append(files, path.Join("assets", e.Name(), "main.go"))
		}
	}
	for _, f := range files {
		src, err := recipe.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(sum, "%s %x\n", f, sha256.Sum256(src))
	}
	dir := "helpers-" + hex.EncodeToString(sum.Sum(nil))[:12]
	g := goBuild{name: "node helpers (pause, iptables-wrapper)", dir: dir, builds: builds, ldflags: "-s -w"}
	g.prepare = func(root string) error {
		for _, f := range files {
			src, _ := recipe.ReadFile(f)
			dst := filepath.Join(root, filepath.Base(filepath.Dir(f)), "main.go")
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, src, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return b.goBuild(ctx, g)
}

// goBuild is one throwaway module under the cache that fetches modules
// from the Go proxy and builds static binaries.
type goBuild struct {
	name    string
	dir     string
	goMod   string            // extra go.mod lines (replace directives)
	gets    []string          // go get arguments
	builds  map[string]string // output binary name → package
	ldflags string
	prepare func(root string) error // writes sources before building
}

func (g goBuild) key() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%q\n%q\n", g.goMod, g.ldflags, g.gets, g.builds)
	return hex.EncodeToString(h.Sum(nil))
}

// goBuild returns the directory holding g's binaries, building them
// unless a previous build with the same inputs left them there.
func (b *builder) goBuild(ctx context.Context, g goBuild) (string, error) {
	root := b.path("go", g.dir)
	bin := filepath.Join(root, "bin")
	stamp := filepath.Join(bin, ".nodrop-key")
	if have, err := os.ReadFile(stamp); err == nil && string(have) == g.key() {
		b.o.Log.Printf("✓ %s: cached in %s", g.name, bin)
		return bin, nil
	}
	step := b.o.Log.Start("compiling %s", g.name)
	fail := func(err error) (string, error) { return "", step.Fail(err) }
	os.RemoveAll(bin)
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fail(err)
	}
	mod := "module nodropbuild\n\ngo 1.26\n\n" + g.goMod
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(mod), 0o644); err != nil {
		return fail(err)
	}
	os.Remove(filepath.Join(root, "go.sum"))
	if g.prepare != nil {
		if err := g.prepare(root); err != nil {
			return fail(err)
		}
	}
	if len(g.gets) > 0 {
		if err := b.goCmd(ctx, root, append([]string{"get"}, g.gets...)...); err != nil {
			return fail(err)
		}
	}
	args := []string{"build", "-trimpath", "-ldflags", g.ldflags}
	if len(g.builds) == 1 {
		for out, pkg := range g.builds {
			args = append(args, "-o", filepath.Join(bin, out), pkg)
		}
	} else {
		// One go build for all packages shares the compile work; each
		// binary is named after its package's last path element.
		args = append(args, "-o", bin+"/")
		for out, pkg := range g.builds {
			if path.Base(pkg) != out {
				return fail(fmt.Errorf("binary %s must be named after its package %s", out, pkg))
			}
			args = append(args, pkg)
		}
	}
	if err := b.goCmd(ctx, root, args...); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(stamp, []byte(g.key()), 0o644); err != nil {
		return fail(err)
	}
	step.Done()
	return bin, nil
}

func (b *builder) goCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	return b.o.Log.Run(ctx, cmd)
}

// goEnv builds static binaries with the local toolchain, outside any
// workspace, resolving modules freely (the module is throwaway).
func goEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off")
}

// parseVersion splits vMAJOR.MINOR.PATCH into major and minor.
func parseVersion(v string) (major, minor string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if !strings.HasPrefix(v, "v") || len(parts) != 3 {
		return "", "", false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return "", "", false
		}
	}
	return parts[0], parts[1], true
}

func tagOf(ref string) string { return ref[strings.LastIndex(ref, ":")+1:] }

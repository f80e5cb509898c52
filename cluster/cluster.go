// Package cluster brings nodrop's kind cluster up and down with kind's Go
// library, and records what each cluster was made from, so that a second
// "up" reuses a cluster only when it is the same one it would create.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	kindcluster "sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/constants"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/yaml"

	"github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// DefaultName is the cluster name when none is given.
const DefaultName = "nodrop"

// identityName is the ConfigMap in kube-system that records what a
// cluster was made from.
const identityName = "nodrop-identity"

// ErrBadInput marks errors caused by the caller's input (a config that
// does not parse, a name clash): nothing was created.
var ErrBadInput = errors.New("bad input")

// badInput is an error that matches ErrBadInput without saying so in its
// message.
type badInput struct{ error }

func (badInput) Is(target error) bool { return target == ErrBadInput }

func badInputf(format string, args ...any) error { return badInput{fmt.Errorf(format, args...)} }

// Options describe a cluster.
type Options struct {
	Name string
	// ConfigPath is the kind config file; "" is DefaultConfig.
	ConfigPath string
	// NodeImage is the node image to create nodes from.
	NodeImage string
	// StateDir holds the cluster's kubeconfig.
	StateDir string
	// Recreate replaces an existing cluster that differs.
	Recreate bool
	Log      *progress.Logger
	// Program creates the cluster: a program that calls CreateHelper
	// first thing (nodrop's binary, the suites' test binary); needed only
	// when a cluster is created.
	Program string
}

// Cluster is a running cluster.
type Cluster struct {
	Name       string
	Kubeconfig string
	Client     kubernetes.Interface
	// Reused says the cluster already existed and was kept.
	Reused bool
	// NodeIPs are the nodes' addresses on the Docker network, the control
	// plane's first: load enters there, so a fault on a worker (paused,
	// drained) does not cut the way in.
	NodeIPs []string
}

// Identity is what a cluster was made from.
type Identity struct {
	ConfigHash string
	NodeImage  string
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

// KubeconfigPath is where the cluster's kubeconfig is written.
func KubeconfigPath(stateDir, name string) string {
	return filepath.Join(stateDir, "clusters", name, "kubeconfig")
}

// Network is the Docker network of a cluster's nodes: one per cluster, so
// that deleting the cluster can delete it too.
func Network(name string) string { return "nodrop-" + name }

func provider(log *progress.Logger) *kindcluster.Provider {
	return kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{log}))
}

// DefaultConfig names nodrop's own single-node kind config
// (nodrop.KindConfig, embedded): the config of an empty ConfigPath.
const DefaultConfig = "nodrop's single-node kind config"

// configName is how messages name a config path.
func configName(path string) string {
	if path == "" {
		return DefaultConfig
	}
	return path
}

// LoadConfig reads and validates a kind config file; "" is nodrop's own
// (DefaultConfig), so a cluster comes up from any directory.
func LoadConfig(path string) ([]byte, *v1alpha4.Cluster, error) {
	raw := nodrop.KindConfig
	if path != "" {
		var err error
		if raw, err = os.ReadFile(path); err != nil {
			return nil, nil, badInputf("reading kind config: %v", err)
		}
	}
	path = configName(path)
	var cfg v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return nil, nil, badInputf("kind config %s does not parse: %v", path, err)
	}
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return nil, nil, badInputf("kind config %s: want kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4, got %q %q",
			path, cfg.Kind, cfg.APIVersion)
	}
	return raw, &cfg, nil
}

// Up creates the cluster, or reuses it when it exists and was made from
// the same config and node image. It refuses a different existing cluster
// unless o.Recreate is set.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	name := o.name()
	raw, _, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	want := Identity{ConfigHash: hashOf(raw), NodeImage: o.NodeImage}
	p := provider(o.Log)
	kubeconfig := KubeconfigPath(o.StateDir, name)

	exists, err := Exists(name)
	if err != nil {
		return nil, err
	}
	if exists {
		// A run killed during a fault (kube-proxy or the API server
		// stopped) could not undo it; a stopped API server would make the
		// cluster look broken.
		resumed, err := chaos.Resume(ctx, Shell{Cluster: name})
		if err != nil {
			return nil, fmt.Errorf("undoing faults left by killed runs: %w", err)
		}
		if len(resumed) > 0 {
			o.Log.Printf("✓ resumed what a run that was killed left stopped: %s", strings.Join(resumed, ", "))
		}
		c, err := connect(p, name, kubeconfig)
		var have Identity
		if err == nil {
			// A node just restarted (a reboot, a restarted Docker) serves
			// the API before it is ready: RBAC not loaded yet says forbidden.
			err = waitAPIServer(ctx, c, o.Log)
		}
		if err == nil {
			have, err = readIdentity(ctx, c.Client)
		}
		switch {
		case err == nil && have == want:
			if err := waitReady(ctx, c, o.Log); err == nil {
				c.Reused = true
				o.Log.Printf("✓ reusing cluster %q: made from the same config (%s) and node image (%s)", name, configName(o.ConfigPath), o.NodeImage)
				return c, nil
			}
			if !o.Recreate {
				return nil, fmt.Errorf("cluster %q exists but is not healthy: %v; rerun with --recreate to replace it", name, err)
			}
		case !o.Recreate:
			return nil, badInputf("cluster %q already exists and %s; rerun with --recreate to replace it, or pick another --name",
				name, differs(have, want, err))
		}
		o.Log.Printf("• replacing cluster %q (--recreate)", name)
		if err := Down(ctx, name, o.StateDir, o.Log); err != nil {
			return nil, err
		}
	}

	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return nil, err
	}
	step := o.Log.Start("creating kind cluster %q from %s with node image %s", name, configName(o.ConfigPath), o.NodeImage)
	err = create(ctx, o, name, raw, kubeconfig)
	if err != nil {
		// kind deletes a cluster whose creation failed; the network is ours.
		removeNetwork(name)
		return nil, step.Fail(err)
	}
	step.Done()
	c, err := connect(p, name, kubeconfig)
	if err != nil {
		return nil, err
	}
	if err := configurePodNetwork(ctx, p, name, c.Client, o.Log); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c, o.Log); err != nil {
		return nil, err
	}
	if err := writeIdentity(ctx, c.Client, want); err != nil {
		return nil, err
	}
	return c, nil
}

func differs(have, want Identity, readErr error) string {
	switch {
	case readErr != nil:
		return fmt.Sprintf("nodrop cannot tell what it was made from (%v)", readErr)
	case have.ConfigHash != want.ConfigHash:
		return "was made from another kind config"
	default:
		return fmt.Sprintf("was made from node image %s, not %s", have.NodeImage, want.NodeImage)
	}
}

// Exists reports whether kind knows a cluster with this name.
func Exists(name string) (bool, error) {
	names, err := provider(nil).List()
	if err != nil {
		return false, fmt.Errorf("listing kind clusters: %w", err)
	}
	return slices.Contains(names, name), nil
}

// Connect returns a client for an existing cluster, and what it was made
// from (or why that is unknown).
func Connect(ctx context.Context, name, stateDir string) (*Cluster, Identity, error) {
	c, err := connect(provider(nil), name, KubeconfigPath(stateDir, name))
	if err != nil {
		return nil, Identity{}, err
	}
	id, err := readIdentity(ctx, c.Client)
	return c, id, err
}

func connect(p *kindcluster.Provider, name, kubeconfig string) (*Cluster, error) {
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o700); err != nil {
		return nil, err
	}
	if err := p.ExportKubeConfig(name, kubeconfig, false); err != nil {
		return nil, fmt.Errorf("writing kubeconfig of cluster %q: %w", name, err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 15 * time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Kubeconfig: kubeconfig, Client: client}
	list, err := p.ListInternalNodes(name)
	if err != nil {
		return nil, err
	}
	// The control plane first.
	slices.SortStableFunc(list, func(a, b nodes.Node) int {
		ra, _ := a.Role()
		rb, _ := b.Role()
		return cmpBool(ra != constants.ControlPlaneNodeRoleValue, rb != constants.ControlPlaneNodeRoleValue)
	})
	for _, n := range list {
		v4, _, err := n.IP()
		if err != nil {
			return nil, fmt.Errorf("address of node %s: %w", n, err)
		}
		c.NodeIPs = append(c.NodeIPs, v4)
	}
	return c, nil
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func readIdentity(ctx context.Context, client kubernetes.Interface) (Identity, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, identityName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Identity{}, errors.New("it has no nodrop identity record (not made by nodrop, or its creation did not finish)")
	}
	if err != nil {
		return Identity{}, fmt.Errorf("reading its identity record: %w", err)
	}
	return Identity{ConfigHash: cm.Data["config-sha256"], NodeImage: cm.Data["node-image"]}, nil
}

func writeIdentity(ctx context.Context, client kubernetes.Interface, id Identity) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: identityName, Namespace: metav1.NamespaceSystem},
		Data: map[string]string{
			"config-sha256": id.ConfigHash,
			"node-image":    id.NodeImage,
			"created":       time.Now().UTC().Format(time.RFC3339),
		},
	}
	_, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("recording the cluster's identity: %w", err)
	}
	return nil
}

// Down deletes the cluster and its Docker network; it is not an error if
// neither exists.
func Down(ctx context.Context, name, stateDir string, log *progress.Logger) error {
	step := log.Start("deleting cluster %q", name)
	if err := provider(log).Delete(name, KubeconfigPath(stateDir, name)); err != nil {
		return step.Fail(err)
	}
	os.RemoveAll(filepath.Dir(KubeconfigPath(stateDir, name)))
	if err := removeNetwork(name); err != nil {
		return step.Fail(err)
	}
	left, err := Leftovers(ctx, name)
	if err != nil {
		return step.Fail(err)
	}
	if len(left) > 0 {
		return step.Fail(fmt.Errorf("still present after delete: %s", strings.Join(left, ", ")))
	}
	step.Done()
	return nil
}

// Leftovers lists the Docker containers and networks of a cluster.
func Leftovers(ctx context.Context, name string) ([]string, error) {
	var left []string
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+name, "--format", "container {{.Names}}").Output()
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	left = append(left, strings.Fields(strings.ReplaceAll(string(out), "container ", "container:"))...)
	out, err = exec.CommandContext(ctx, "docker", "network", "ls", "--filter", "name=^"+Network(name)+"$", "--format", "network:{{.Name}}").Output()
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	return append(left, strings.Fields(string(out))...), nil
}

func removeNetwork(name string) error {
	net := Network(name)
	if exec.Command("docker", "network", "inspect", net).Run() != nil {
		return nil
	}
	if out, err := exec.Command("docker", "network", "rm", net).CombinedOutput(); err != nil {
		return fmt.Errorf("removing network %s: %v: %s", net, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

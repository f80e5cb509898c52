package cluster

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	kindcluster "sigs.k8s.io/kind/pkg/cluster"

	"github.com/nodrop-dev/nodrop/internal/helperproc"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// CreateArg, as a program's first argument, makes it the process that
// creates a kind cluster (CreateHelper). It is no command a person types.
//
// kind puts a cluster's nodes on the Docker network its process's
// environment names (KIND_EXPERIMENTAL_DOCKER_NETWORK) and takes the
// network from nowhere else. nodrop gives every cluster a network of its
// own (Network), so the create runs in a process of its own whose
// environment alone names it; nodrop's own environment never changes.
const CreateArg = "__nodrop-kind-create"

// networkEnv is the variable kind reads the network's name from.
const networkEnv = "KIND_EXPERIMENTAL_DOCKER_NETWORK"

// CreateHelper creates the cluster when args (a program's arguments,
// os.Args[1:]) start with CreateArg, and returns its exit code and true;
// otherwise 0 and false. Programs that create clusters (nodrop's binary,
// the suites' test binary) call it first thing, and name themselves in
// Options.Program. It says it is ready on standard output, then kind's
// messages follow there, one per line.
func CreateHelper(args []string) (int, bool) {
	if len(args) == 0 || args[0] != CreateArg {
		return 0, false
	}
	f := flag.NewFlagSet(CreateArg, flag.ContinueOnError)
	name := f.String("name", "", "cluster name")
	config := f.String("config", "", "kind config file")
	image := f.String("image", "", "node image")
	kubeconfig := f.String("kubeconfig", "", "where the kubeconfig goes")
	wait := f.Duration("wait", 4*time.Minute, "how long to wait for the control plane")
	f.SetOutput(io.Discard)
	if err := f.Parse(args[1:]); err != nil {
		fmt.Printf("%s%v\n", createErrPrefix, err)
		return 2, true
	}
	fmt.Println(createReady)
	raw, err := os.ReadFile(*config)
	if err != nil {
		fmt.Printf("%s%v\n", createErrPrefix, err)
		return 1, true
	}
	p := kindcluster.NewProvider(kindcluster.ProviderWithDocker(), kindcluster.ProviderWithLogger(kindLogger{progress.New(os.Stdout, false)}))
	err = p.Create(*name,
		kindcluster.CreateWithRawConfig(raw),
		kindcluster.CreateWithNodeImage(*image),
		kindcluster.CreateWithKubeconfigPath(*kubeconfig),
		kindcluster.CreateWithWaitForReady(*wait),
		kindcluster.CreateWithDisplayUsage(false),
		kindcluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		fmt.Printf("%s%v\n", createErrPrefix, err)
		return 1, true
	}
	return 0, true
}

// createErrPrefix marks the helper's error line among kind's messages.
const createErrPrefix = "create failed: "

// createReady is the helper's first line: a program that says anything
// else does not know CreateArg and is stopped (helperproc).
const createReady = "nodrop kind-create ready"

// create makes the cluster from raw through o.Program's CreateHelper, its
// nodes on the cluster's own network; kind's messages become progress
// lines. The helper is in a process group of its own: a Ctrl-C stops
// nodrop after the create, as kind's own create would not be cut halfway.
func create(ctx context.Context, o Options, name string, raw []byte, kubeconfig string) error {
	if o.Program == "" {
		return errors.New("cluster.Options.Program is not set: no program to create the cluster with (one that calls cluster.CreateHelper first)")
	}
	config := filepath.Join(filepath.Dir(kubeconfig), "kind-config.yaml")
	if err := os.WriteFile(config, raw, 0o600); err != nil {
		return err
	}
	cmd := exec.Command(o.Program, CreateArg, "--name", name, "--config", config, "--image", o.NodeImage,
		"--kubeconfig", kubeconfig, "--wait", (4 * time.Minute).String())
	cmd.Env = append(os.Environ(), networkEnv+"="+Network(name))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var why string
	p, err := helperproc.Start(ctx, cmd, "the kind cluster's creator", createReady, 10*time.Second, func(r *bufio.Reader) { why = relay(r, o.Log) })
	if err != nil {
		return err
	}
	if err := <-p.Done; err != nil {
		if why != "" {
			return errors.New(why)
		}
		return fmt.Errorf("creating the cluster: %w %s", err, p.Stderr())
	}
	return ctx.Err()
}

// relay passes kind's lines on as progress lines (say) and returns the
// helper's error, if it printed one.
func relay(r io.Reader, log *progress.Logger) (why string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, createErrPrefix); ok {
			why = e
			continue
		}
		say(log, strings.TrimPrefix(strings.TrimSpace(line), "kind: "))
	}
	return why
}

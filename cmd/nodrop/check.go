package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	nodrop "github.com/nodrop-dev/nodrop"
	"github.com/nodrop-dev/nodrop/chaos"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/fixtures"
	"github.com/nodrop-dev/nodrop/images"
	"github.com/nodrop-dev/nodrop/internal/nodeimage"
	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/lint"
	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/manifest"
	"github.com/nodrop-dev/nodrop/scenario"
)

// checkOptions are nodrop check's flags.
type checkOptions struct {
	files, kustomize []string
	chart            manifest.Chart
	target           scenario.Target
	path, method     string
	mode             string
	protocol         string
	grpcMethod       string
	streams          int
	balancer         string
	disruption       string
	fault, faultAt   string
	via              string
	rate             int
	minRate          int
	timeout          time.Duration
	runs             int
	loadImages       []string
	kubeconfig       string
	kubeContext      string
	nodeIP, url      string
	clusterName      string
	namespace        string
	podSecurity      string
	keep, asJSON     bool
	attempts         int
	junit, out       string
	stallTrace       string
	verbose          bool
	// Where load comes from (--load-from and its flags).
	loadFrom loadFromOptions
	// stdin is where -f - reads from.
	stdin io.Reader
}

// checkModes are the load modes a check or bench runs, by --mode, in order.
var checkModes = map[string][]fixtures.Mode{"keepalive": {fixtures.KeepAlive}, "fresh": {fixtures.Fresh}, "both": fixtures.Modes}

func newCheckCommand() *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check -f app.yaml [flags]",
		Short: "Roll your own Deployment under load and say whether it loses requests, and why",
		Long: `Deploy your objects (files with -f, kustomize directories with -k) into a fresh
namespace, wait until they serve, calibrate, then roll the Deployment under
constant load and judge every request: the verdict, the losses by class, each
episode of losses next to what Kubernetes did then, and what to change.

Before it runs, it reviews the manifests (nodrop lint) and says what each
finding costs; the run then confirms or refutes them.

The cluster is nodrop's own kind cluster unless --kubeconfig names another:
then nodrop builds and loads nothing, and load goes to a node's address
(--node-ip, default the first node's InternalIP) or to --url.

With --load-from cluster the load comes from inside the cluster, as its own
clients' does: --load-pods generator pods of a Job, spread across the nodes,
each sending its share to the Service's ClusterIP; nodrop attaches to them
through the API server (only the kubeconfig is needed), merges their
outcomes into one verdict, each loss naming the pod and node that sent it,
and deletes the Job on every way out.

A machine that does not hold the load (its CPU taken with nothing happening,
at calibration) gets half the rate, down to --min-rate; the run is judged at
the rate it calibrated at and says why, naming what took the CPU.

Exit status: 0 lossless, 1 requests lost, 2 bad input (nothing left behind),
3 not judged (load not delivered, calibration lost requests, interrupted).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd, o) },
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file or directory (YAML or JSON, several documents), or - for standard input (helm template … | nodrop check -f -); repeatable")
	f.StringArrayVarP(&o.kustomize, "kustomize", "k", nil, "kustomize directory; repeatable")
	chartFlags(f, &o.chart)
	f.StringVar(&o.target.Deployment, "deployment", "", "the Deployment to roll (needed when the manifests hold several)")
	f.StringVar(&o.target.Service, "service", "", "the Service load goes through (default: the one selecting the Deployment's pods); one selecting another Deployment of the manifests puts that one (a proxy) in front")
	f.StringVar(&o.target.Port, "port", "", "the Service port, by name or number (default: its only port, or the one named http)")
	f.StringVar(&o.path, "path", "/", "request path")
	f.StringVar(&o.method, "method", http.MethodGet, "HTTP method")
	f.StringVar(&o.mode, "mode", "both", "load mode: keepalive (kept-alive connections: draining), fresh (a new connection per request: endpoint propagation) or both")
	f.StringVar(&o.protocol, "protocol", "http", "the load's protocol: http; h2c (HTTP/2 without TLS, long-lived: requests on four pinned connections, four at once on each); or grpc (long-lived: unary RPCs on four pinned HTTP/2 connections; the Service port named grpc or declaring appProtocol grpc/h2c unless --port names one)")
	f.StringVar(&o.grpcMethod, "grpc-method", "", "--protocol grpc: the unary method to call, /pkg.Service/Method, with an empty request (default: the standard health service's Check)")
	f.IntVar(&o.streams, "streams", 0, "--protocol grpc: also hold this many server streams of the health service's Watch open, each judged on how it ended")
	f.StringVar(&o.balancer, "balancer", "", "--protocol grpc with --load-from cluster: clients that resolve the Service's name by DNS (a headless Service: its pods' addresses) and balance by this policy, pick_first or round_robin, as your clients do (default: each client pinned to the Service's ClusterIP)")
	f.StringVar(&o.disruption, "disruption", "restart", "what to do under load: "+kube.DisruptionNames)
	f.StringVar(&o.via, "via", "", "send load through a proxy in front of the Service, on nodrop's kind cluster: the ingress controller (ingress: Traefik, installed if missing, and an Ingress nodrop adds) or a proxy of nodrop's that reloads on endpoint changes ("+proxyNames()+")")
	f.StringVar(&o.fault, "fault", "", "chaos injected during the disruption, on nodrop's kind cluster: "+chaos.Names)
	f.StringVar(&o.faultAt, "fault-at", "", "when the fault starts: DURATION after the disruption starts, pod-deleting[+DURATION] after the first old pod is deleted, or P%[+DURATION] after P% of the pods were deleted (30%) (default pod-deleting; with --disruption none, 0s)")
	f.IntVar(&o.rate, "rate", loadgen.DefaultRate, "requests per second")
	f.IntVar(&o.minRate, "min-rate", 0, "when the machine does not hold --rate (the calibration finds its CPU taken with nothing happening), halve the load, down to this rate, and judge the run there (default: half of --rate; --min-rate equal to --rate keeps the rate as asked)")
	f.DurationVar(&o.timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout")
	f.IntVar(&o.runs, "runs", 1, "runs per mode, each in a fresh namespace")
	f.StringArrayVar(&o.loadImages, "load-image", nil, "local Docker image to load into the kind nodes first (no registry needed); repeatable")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of a cluster you already have (default: nodrop's kind cluster)")
	f.StringVar(&o.kubeContext, "context", "", "kubeconfig context")
	f.StringVar(&o.nodeIP, "node-ip", "", "address at which the cluster's NodePorts answer (default: nodrop's kind node, or the first node's InternalIP)")
	f.StringVar(&o.url, "url", "", "send load here instead of a NodePort (your own route to the Service)")
	f.StringVar(&o.clusterName, "cluster", cluster.DefaultName, "name of nodrop's kind cluster")
	f.StringVar(&o.namespace, "namespace", "nodrop-check", "prefix of the namespace each run creates (and deletes)")
	f.StringVar(&o.podSecurity, "pod-security", "", "Pod Security Standard level each run's namespace enforces: restricted, baseline (default: none)")
	f.BoolVar(&o.keep, "keep", false, "leave each run's namespace in place")
	f.IntVar(&o.attempts, "attempts", scenario.DefaultAttempts, "run a run that ends not judged (load not delivered, calibration failed) again, up to this many times in all; a judged run is never repeated")
	f.BoolVar(&o.asJSON, "json", false, "print every run's full result as JSON on stdout")
	f.StringVar(&o.junit, "junit", "", "write a JUnit report (one test case per mode × run) to this file")
	f.StringVar(&o.out, "out", "", "write results.json, junit.xml, summary.md and each run's timeline to this directory")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "stream the output of every command nodrop runs")
	o.loadFrom.flags(f, true)
	f.StringVar(&o.stallTrace, "stall-trace", "", "write the Go execution trace around each stall of the load generator of 50ms or more to this folder (go tool trace)")
	return cmd
}

// checkPlan is a check's input, validated before the cluster is touched.
type checkPlan struct {
	objs []*unstructured.Unstructured
	// target is what the runs roll and load (the port the protocol
	// speaks among the Service's), resolved as resolved.
	target     scenario.Target
	resolved   *scenario.Resolved
	modes      []fixtures.Mode
	disruption kube.Disruption
	faults     []scenario.Fault
	name       string
	// via is the proxy nodrop puts in front (--via), viaImage its image
	// as the nodes hold it (known once the cluster is up).
	via      fixtures.Proxy
	viaImage string
}

// viaName names the proxy --via puts in front: its Deployment, Service,
// account and role.
const viaName = "nodrop-via"

// proxyNames are the lb image's modes.
func proxyNames() string {
	var names []string
	for _, p := range fixtures.Proxies {
		if p.LB() {
			names = append(names, string(p))
		}
	}
	return strings.Join(names, ", ")
}

func planCheck(o checkOptions) (*checkPlan, error) {
	if len(o.files) == 0 && len(o.kustomize) == 0 && o.chart.Path == "" {
		return nil, usagef("name your manifests with -f FILE, -k DIR or --chart DIR")
	}
	modes, err := o.loadModes()
	if err != nil {
		return nil, err
	}
	if o.attempts < 1 || o.attempts > 10 {
		return nil, usagef("--attempts must be 1–10, got %d", o.attempts)
	}
	if o.runs < 1 || o.runs > 100 {
		return nil, usagef("--runs must be 1–100, got %d", o.runs)
	}
	if o.rate <= 0 {
		return nil, usagef("--rate must be > 0, got %d", o.rate)
	}
	if o.minRate < 0 || o.minRate > o.rate {
		return nil, usagef("--min-rate must be 1–%d (--rate), got %d", o.rate, o.minRate)
	}
	if !strings.HasPrefix(o.path, "/") {
		return nil, usagef("--path must start with /, got %q", o.path)
	}
	if err := o.loadFrom.check(o.kubeconfig != "" || o.kubeContext != "", o.via); err != nil {
		return nil, err
	}
	switch o.podSecurity {
	case kube.PodSecurityNone, kube.PodSecurityBaseline, kube.PodSecurityRestricted:
	default:
		return nil, usagef("--pod-security %q: want restricted or baseline", o.podSecurity)
	}
	d, err := kube.ParseDisruption(o.disruption)
	if err != nil {
		return nil, usageError{err}
	}
	var faults []scenario.Fault
	if o.fault != "" {
		if o.kubeconfig != "" || o.kubeContext != "" {
			return nil, usagef("--fault runs commands on the nodes, which nodrop can do only on its own kind cluster, not with --kubeconfig or --context")
		}
		at := o.faultAt
		if at == "" && o.disruption == "none" {
			at = "0s" // no pod is deleted but by the fault
		}
		f, err := chaos.Parse(o.fault, at)
		if err != nil {
			return nil, usageError{err}
		}
		faults = append(faults, f)
	}
	objs, err := readManifests(o.stdin, o.files, o.kustomize, o.chart)
	if err != nil {
		return nil, usageError{err}
	}
	var via fixtures.Proxy
	if o.via != "" {
		if via, err = fixtures.ParseProxy(o.via); err != nil {
			return nil, usagef("--via: %v", err)
		}
		if o.kubeconfig != "" || o.kubeContext != "" || o.url != "" {
			return nil, usagef("--via runs nodrop's proxy or ingress controller, which only nodrop's own kind cluster holds: not with --kubeconfig, --context or --url")
		}
	}
	target := o.target
	target.Ingress = via == fixtures.Ingress
	if o.protocol == "grpc" || o.protocol == "h2c" {
		target.Scheme = o.protocol
	}
	r, err := scenario.Resolve(objs, target)
	if err != nil {
		return nil, usageError{err}
	}
	if via != "" && r.Front != nil {
		return nil, usagef("--via: service %s already puts deployment %s in front of deployment %s", r.Service.Name, r.Front.Name, r.Deployment.Name)
	}
	if replicas := r.Deployment.Spec.Replicas; o.disruption == "scale-down" && (replicas == nil || *replicas < 2) {
		return nil, usagef("--disruption scale-down needs at least 2 replicas; deployment %s has 1", r.Deployment.Name)
	}
	return &checkPlan{objs: objs, target: target, resolved: r, modes: modes, disruption: d, faults: faults, name: r.Deployment.Name, via: via}, nil
}

// scenario is one run of the plan under one load mode: the user's
// objects rolled under load, expected to lose nothing.
func (p *checkPlan) scenario(o checkOptions, mode fixtures.Mode) scenario.Scenario {
	objs, target := p.objs, p.target
	if p.via != "" && p.via != fixtures.Ingress {
		// The proxy's objects were valid when the plan was made (a
		// test renders them); they cannot fail here.
		lb, _ := fixtures.LBObjects(p.via, viaName, p.resolved.Service.Name, p.resolved.PodPort(), p.viaImage)
		objs = append(append([]*unstructured.Unstructured{}, p.objs...), lb...)
		target = scenario.Target{Deployment: p.resolved.Deployment.Name, Service: viaName}
	}
	return scenario.Scenario{
		Name: p.name, Objects: objs, Target: target, NamespacePrefix: o.namespace, PodSecurity: o.podSecurity,
		Traffic:    []scenario.Traffic{o.traffic(mode)},
		Disruption: scenario.Rollout(p.disruption),
		Faults:     p.faults,
		MinRate:    cmp.Or(o.minRate, max(1, o.rate/2)),
	}
}

// loadModes are the load modes --protocol and --mode ask for.
func (o checkOptions) loadModes() ([]fixtures.Mode, error) {
	switch o.protocol {
	case "grpc":
		if o.mode != "both" {
			return nil, usagef("--mode is for HTTP load; gRPC load is long-lived (leave --mode out)")
		}
		if o.streams < 0 || o.streams > loadgen.MaxStreams {
			return nil, usagef("--streams must be 0–%d, got %d", loadgen.MaxStreams, o.streams)
		}
		if o.grpcMethod != "" && !strings.HasPrefix(o.grpcMethod, "/") {
			return nil, usagef("--grpc-method must be /package.Service/Method, got %q", o.grpcMethod)
		}
		if o.balancer != "" {
			if !slices.Contains(loadgen.Balancers, o.balancer) {
				return nil, usagef("--balancer %q: want %s", o.balancer, strings.Join(loadgen.Balancers, " or "))
			}
			if o.loadFrom.from != "cluster" {
				return nil, usagef("--balancer: clients that resolve the Service's name run in the cluster: add --load-from cluster")
			}
			return []fixtures.Mode{fixtures.ClientSideGRPC}, nil
		}
		return []fixtures.Mode{fixtures.LongLivedGRPC}, nil
	case "h2c":
		if o.balancer != "" {
			return nil, usagef("--balancer needs --protocol grpc")
		}
		if o.mode != "both" {
			return nil, usagef("--mode is for HTTP/1.1 load; HTTP/2 load is long-lived (leave --mode out)")
		}
		if o.grpcMethod != "" || o.streams != 0 {
			return nil, usagef("--grpc-method and --streams need --protocol grpc")
		}
		return []fixtures.Mode{fixtures.LongLivedHTTP2}, nil
	case "http", "":
		if o.grpcMethod != "" || o.streams != 0 || o.balancer != "" {
			return nil, usagef("--grpc-method, --streams and --balancer need --protocol grpc")
		}
	default:
		return nil, usagef("--protocol %q: want http, h2c or grpc", o.protocol)
	}
	modes, ok := checkModes[o.mode]
	if !ok {
		return nil, usagef("--mode %q: want keepalive, fresh or both", o.mode)
	}
	return modes, nil
}

// traffic is the check's load in one mode, expected to lose nothing.
func (o checkOptions) traffic(mode fixtures.Mode) scenario.Traffic {
	t := scenario.Traffic{
		Load: mode.Load(), Path: o.path,
		Config: loadgen.Config{Method: o.method, Rate: o.rate, Timeout: o.timeout},
		Expect: scenario.Expectation{Verdict: loadgen.Lossless, Why: "a rollout of a well-configured Deployment loses no request"},
	}
	if mode == fixtures.LongLivedGRPC || mode == fixtures.ClientSideGRPC {
		t.Path, t.Config.Method = o.grpcMethod, ""
		t.Config.Streams = o.streams
	}
	if mode == fixtures.ClientSideGRPC {
		t.Load.Balancer = o.balancer
	}
	return t
}

func runCheck(cmd *cobra.Command, o checkOptions) error {
	ctx := cmd.Context()
	o.stdin = cmd.InOrStdin()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	report := stdout
	if o.asJSON {
		// stdout is the JSON; the human report goes to stderr.
		report = stderr
	}
	plan, err := planCheck(o)
	if err != nil {
		return err
	}
	log := progress.New(stderr, o.verbose)
	sched.OneP()
	sched.PreferLoadGenerator()

	findings := lint.Check(plan.objs, lint.Options{Deployment: plan.resolved.Deployment.Name, Images: lint.LocalImages})
	if len(findings) > 0 {
		fmt.Fprintf(report, "Review of the manifests (nodrop lint), to be confirmed or refuted by the run:\n")
		lint.Write(report, findings)
		fmt.Fprintln(report)
	}

	env, err := checkEnv(ctx, o, log)
	if err != nil {
		// The cluster could not be reached or brought up: nothing was
		// judged.
		return notJudgedUnlessBadInput(err)
	}
	stalls := startStallWatch(ctx, o.stallTrace, log)
	defer stalls.Stop()
	env.Witness, env.OnStall, env.Favour = stalls.Witness(), stalls.OnStall(), sched.DuringLoad
	if env.Generators, err = o.loadFrom.generators(ctx, o.clusterName, env, log); err != nil {
		return notJudgedUnlessBadInput(err)
	}
	if err := plan.front(ctx, o, &env, report, log); err != nil {
		return err
	}

	var records []scenario.Record
	for run := 1; run <= o.runs; run++ {
		for _, mode := range plan.modes {
			if ctx.Err() != nil {
				break
			}
			s := plan.scenario(o, mode)
			fmt.Fprintf(report, "\n== run %d of %d, %s: %s of deployment %s under %d rps\n", run, o.runs, mode, s.What(), plan.name, o.rate)
			res, err := s.RunUntilJudged(ctx, env, o.attempts)
			rec := scenario.Records(res, err)[0]
			rec.Run = run
			records = append(records, rec)
			rec.WriteText(report)
			if errors.Is(err, scenario.ErrBadInput) {
				return usageError{err}
			}
		}
	}
	if err := writeCheckOutputs(o, stdout, records); err != nil {
		return err
	}
	return checkExit(ctx, records)
}

// front readies what stands in front of the user's pods, and says so:
// the cluster's ingress controller (--via ingress), a proxy nodrop puts
// there (--via nginx…), the user's own proxy, or the NodePort Service
// nodrop adds.
func (plan *checkPlan) front(ctx context.Context, o checkOptions, env *scenario.Env, report io.Writer, log *progress.Logger) error {
	if plan.via == fixtures.Ingress {
		state, err := cacheDir()
		if err != nil {
			return err
		}
		if env.Ingress, err = cluster.InstallIngress(ctx, o.clusterName, state, env.REST, log, env.Timeouts); err != nil {
			return notJudgedUnlessBadInput(err)
		}
		fmt.Fprintf(report, "nodrop adds an Ingress for Service %s and sends load through the cluster's ingress controller (%s): its losses count as yours.\n",
			plan.resolved.Service.Name, env.Ingress.Name)
	} else if plan.via != "" {
		ref, err := proxyImage(ctx, o.clusterName, log)
		if err != nil {
			return notJudgedUnlessBadInput(err)
		}
		plan.viaImage = ref
		fmt.Fprintf(report, "nodrop puts a proxy in front of Service %s (%s, deployment %s) and sends load through it: its losses count as yours.\n",
			plan.resolved.Service.Name, plan.via, viaName)
	}
	if f := plan.resolved.Front; f != nil {
		fmt.Fprintf(report, "Load goes through Service %s to deployment %s's pods, in front of deployment %s (a proxy): its losses count as the user's.\n",
			plan.resolved.Service.Name, f.Name, plan.resolved.Deployment.Name)
	}
	if plan.resolved.Added != nil && plan.via == "" {
		fmt.Fprintf(report, "nodrop adds Service %s (NodePort, same selector and port as %s) so load reaches kube-proxy from outside; your objects are unchanged.\n",
			plan.resolved.Added.Name, plan.resolved.Service.Name)
	}
	return nil
}

// checkExit is the exit status of a check: any judged loss is 1; else a
// run that could not be judged (or was never run) is 3; else 0.
func checkExit(ctx context.Context, records []scenario.Record) error {
	lost, notJudged := 0, []string{}
	for _, r := range records {
		switch {
		case r.Error != "":
			notJudged = append(notJudged, r.Why())
		case r.Outcome.Got == loadgen.Lossy:
			lost++
		case r.Verdict != loadgen.Lossless:
			notJudged = append(notJudged, "not judged: "+strings.Join(r.NotJudgedBecause(), "; "))
		case !r.Outcome.Passed():
			lost++
		}
	}
	switch {
	case lost > 0:
		return exitError{code: exitLost, msg: fmt.Sprintf("%d of %d runs lost requests", lost, len(records))}
	case ctx.Err() != nil:
		return exitError{code: exitNotJudged, msg: "interrupted: not judged (what the runs created was deleted)"}
	case len(notJudged) > 0:
		return exitError{code: exitNotJudged, msg: strings.Join(notJudged, "; ")}
	}
	return nil
}

// checkEnv connects to the cluster the check runs on.
func checkEnv(ctx context.Context, o checkOptions, log *progress.Logger) (scenario.Env, error) {
	env := scenario.Env{Timeouts: kube.DefaultTimeouts(), Log: log, Keep: o.keep, URL: o.url, NodeIP: o.nodeIP}
	var rc *rest.Config
	if o.kubeconfig != "" || o.kubeContext != "" {
		if len(o.loadImages) > 0 {
			return env, usagef("--load-image loads into nodrop's kind cluster; on a cluster of your own, push the image where its nodes pull from")
		}
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = o.kubeconfig
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.kubeContext}).ClientConfig()
		if err != nil {
			return env, usagef("kubeconfig %s: %v", o.kubeconfig, err)
		}
		rc = cfg
	} else {
		state, err := cacheDir()
		if err != nil {
			return env, err
		}
		if err := requireDocker(ctx); err != nil {
			return env, err
		}
		exists, err := cluster.Exists(o.clusterName)
		if err != nil {
			return env, err
		}
		if !exists {
			// As `nodrop cluster up` would: the first time on a machine
			// this builds the node image (about 12 minutes on 2 cores).
			log.Printf("nodrop's kind cluster %q does not exist: bringing it up (use --kubeconfig for a cluster of your own)", o.clusterName)
			if _, err := clusterUp(ctx, log, upOptions{name: o.clusterName, k8sVersion: nodeimage.DefaultKubernetesVersion}); err != nil {
				return env, err
			}
		}
		c, _, err := cluster.Connect(ctx, o.clusterName, state)
		if c == nil {
			return env, fmt.Errorf("connecting to cluster %q: %w", o.clusterName, err)
		}
		env.Nodes = cluster.Shell{Cluster: o.clusterName}
		if self, err := os.Executable(); err == nil {
			env.HelperProgram = self // the delay faults hold packets there (main calls nfqueue.Helper)
		}
		if env.NodeIP == "" && len(c.NodeIPs) > 0 {
			env.NodeIP = c.NodeIPs[0]
		}
		if err := loadLocalImages(ctx, o.clusterName, o.loadImages, log); err != nil {
			return env, err
		}
		if rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
			return env, err
		}
	}
	env, err := scenario.NewEnv(ctx, rc, env)
	if errors.Is(err, scenario.ErrNoNodeAddress) {
		return env, usagef("%v: give --node-ip or --url", err)
	}
	return env, err
}

// loadLocalImages loads images from the local Docker engine into the
// kind nodes; an image that is not there is bad input.
func loadLocalImages(ctx context.Context, name string, refs []string, log *progress.Logger) error {
	if len(refs) == 0 {
		return nil
	}
	for _, ref := range refs {
		if !lint.LocalImage(ctx, ref) {
			return usagef("--load-image %s: no such image in the local Docker engine (docker images lists what is there)", ref)
		}
	}
	return cluster.LoadImages(ctx, name, refs, log)
}

func writeCheckOutputs(o checkOptions, stdout io.Writer, runs []scenario.Record) error {
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(runs); err != nil {
			return err
		}
	}
	junitPath := o.junit
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return err
		}
		raw, err := json.MarshalIndent(runs, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, "results.json"), raw, 0o644); err != nil {
			return err
		}
		var rows []scenario.Row
		for _, r := range runs {
			rows = append(rows, r.Row())
		}
		f, err := os.Create(filepath.Join(o.out, "summary.md"))
		if err != nil {
			return err
		}
		werr := scenario.WriteSummary(f, rows)
		if err := errors.Join(werr, f.Close()); err != nil {
			return err
		}
		for i, r := range runs {
			f, err := os.Create(filepath.Join(o.out, fmt.Sprintf("run-%d-%s.txt", i+1, r.Load)))
			if err != nil {
				return err
			}
			r.WriteText(f)
			if err := f.Close(); err != nil {
				return err
			}
		}
		if junitPath == "" {
			junitPath = filepath.Join(o.out, "junit.xml")
		}
	}
	if junitPath != "" {
		return writeJUnit(junitPath, runs)
	}
	return nil
}

// proxyImage builds nodrop's proxy image (cached by its content) and
// loads it into the kind cluster's nodes.
func proxyImage(ctx context.Context, clusterName string, log *progress.Logger) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	built, err := images.Build(ctx, nodrop.Sources, dir, log)
	if err != nil {
		return "", err
	}
	for _, b := range built {
		if b.Variant == fixtures.LBImage {
			return b.Ref, cluster.LoadImages(ctx, clusterName, []string{b.Ref}, log)
		}
	}
	return "", fmt.Errorf("no %s image among nodrop's images", fixtures.LBImage)
}

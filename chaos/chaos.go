// Package chaos holds the faults nodrop injects while a rollout runs under
// load (scenario.Fault values): what real clusters throw at a
// configuration that is lossless in a calm rollout. Each fault is undone
// however the run ends, and Resume undoes what a run killed outright
// left behind.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/probes"
	"github.com/nodrop-dev/nodrop/scenario"
)

// Names are the faults Parse knows, as the CLI names them.
const Names = "kill-pod, crash-pod, drain-node[=DURATION], pause-node[=DURATION], pause-kube-proxy[=DURATION], restart-kube-proxy, pause-controller-manager[=DURATION], pause-apiserver[=DURATION], [node-]packet-loss=P%[/DURATION], [node-]delay=DELAY[:JITTER][/DURATION]"

// DefaultPause is how long a pause-* fault lasts unless told.
const DefaultPause = 10 * time.Second

// DefaultAt is when a fault starts unless told: as the first old pod is
// deleted, so the rollout is under way.
var DefaultAt = scenario.FaultAt{After: probes.PodDeleting}

// ErrBadFault marks a fault or a moment Parse cannot read.
var ErrBadFault = errors.New("bad fault")

// Parse reads a fault (Names) and the moment it starts (ParseAt; "" is
// DefaultAt).
func Parse(fault, at string) (scenario.Fault, error) {
	when, err := ParseAt(at)
	if err != nil {
		return scenario.Fault{}, err
	}
	name, arg, hasArg := strings.Cut(fault, "=")
	switch name {
	case "kill-pod", "crash-pod", "restart-kube-proxy":
		if hasArg {
			return scenario.Fault{}, fmt.Errorf("%w: %s takes no value, got %q", ErrBadFault, name, fault)
		}
		switch name {
		case "crash-pod":
			return CrashPod(when), nil
		case "restart-kube-proxy":
			return RestartKubeProxy(when), nil
		}
		return KillPod(when), nil
	case "packet-loss", "node-packet-loss":
		p, d, err := parseLoss(arg)
		if err != nil {
			return scenario.Fault{}, err
		}
		if name == "node-packet-loss" {
			return NodePacketLoss(p, d, when), nil
		}
		return PacketLoss(p, d, when), nil
	case "delay", "node-delay":
		delay, jitter, d, err := parseDelay(arg)
		if err != nil {
			return scenario.Fault{}, err
		}
		if name == "node-delay" {
			return NodeDelay(delay, jitter, d, when), nil
		}
		return Delay(delay, jitter, d, when), nil
	case "netem":
		return scenario.Fault{}, fmt.Errorf("%w: nodrop does not use netem (the kernels it was built on have no sch_netem): delay=100ms:50ms/10s holds packets (with jitter: reordering), packet-loss=1%%/10s drops them", ErrBadFault)
	case "drain-node":
		d, ok := lasting(arg, hasArg, DefaultDrained)
		if !ok {
			return scenario.Fault{}, fmt.Errorf("%w: drain-node=%s: want how long the node stays cordoned, from 1s to 5m, e.g. 30s", ErrBadFault, arg)
		}
		return DrainNode(d, when), nil
	case "pause-kube-proxy", "pause-apiserver", "pause-controller-manager", "pause-node":
		d, ok := lasting(arg, hasArg, DefaultPause)
		if !ok {
			return scenario.Fault{}, fmt.Errorf("%w: %s=%s: want a duration from 1s to 5m, e.g. 10s", ErrBadFault, name, arg)
		}
		switch name {
		case "pause-apiserver":
			return PauseAPIServer(d, when), nil
		case "pause-controller-manager":
			return PauseControllerManager(d, when), nil
		case "pause-node":
			return PauseNode(d, when), nil
		}
		return PauseKubeProxy(d, when), nil
	}
	return scenario.Fault{}, fmt.Errorf("%w: unknown fault %q (known: %s)", ErrBadFault, fault, Names)
}

// lasting reads how long a fault lasts: def when not given, else a
// duration above 0 and at most 5 minutes (ok false otherwise).
func lasting(s string, given bool, def time.Duration) (time.Duration, bool) {
	if !given {
		return def, true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d > 0 && d <= 5*time.Minute
}

// ParseAt reads when a fault starts: before: in place before the
// disruption starts (which waits for it); DURATION after the disruption
// starts ("5s"); pod-deleting[+DURATION]: that long after the first old
// pod is deleted; or P%[+DURATION]: after P% of the Deployment's pods
// have been deleted (30%: the rollout a third of the way through; at
// least one pod). "" is DefaultAt.
func ParseAt(s string) (scenario.FaultAt, error) {
	if s == "" {
		return DefaultAt, nil
	}
	bad := fmt.Errorf("%w: --fault-at %q: want before (in place before the disruption starts), a duration after the disruption starts (5s), pod-deleting[+DURATION] or P%%[+DURATION] (30%%: after 30%% of the pods were deleted)", ErrBadFault, s)
	at := scenario.FaultAt{After: probes.PodDeleting}
	if s == "before" {
		return scenario.FaultAt{Before: true}, nil
	}
	head, rest, _ := strings.Cut(s, "+")
	switch {
	case head == "pod-deleting":
	case strings.HasSuffix(head, "%"):
		p, err := strconv.ParseFloat(strings.TrimSuffix(head, "%"), 64)
		if err != nil || p <= 0 || p > 100 {
			return scenario.FaultAt{}, bad
		}
		at.Share = p / 100
	default:
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 5*time.Minute {
			return scenario.FaultAt{}, bad
		}
		return scenario.FaultAt{Delay: d}, nil
	}
	if rest == "" {
		if strings.HasSuffix(s, "+") {
			return scenario.FaultAt{}, bad
		}
		return at, nil
	}
	d, err := time.ParseDuration(rest)
	if err != nil || d < 0 || d > 5*time.Minute {
		return scenario.FaultAt{}, bad
	}
	at.Delay = d
	return at, nil
}

// paused are the processes a pause-* fault stops by signal (SIGSTOP, then
// SIGCONT), on every node that runs one: kube-proxy's rules stay as they
// were while it is stopped; a stopped API server answers nothing.
var paused = []string{"kube-proxy", "kube-apiserver", "kube-controller-manager"}

// resumeStopped resumes each of paused that is stopped on the node (or
// has a stopped child) and prints its name, then removes the rules of
// packet-loss and delay faults and says so.
var resumeStopped = stoppedScript(paused) + removeRules + "; true"

// stoppedScript resumes each of names that is stopped, and each stopped
// child of one (resumeScript says why), printing the name for each.
func stoppedScript(names []string) string {
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, `for p in $(pgrep -x %s 2>/dev/null); do for c in $p $(pgrep -P $p); do [ "$(awk '{print $3}' /proc/$c/stat)" = T ] && kill -CONT $c && echo %s; done; done; `, comm(name), name)
	}
	return b.String()
}

// resumeScript resumes process and every child of it. A child the
// process forked as SIGSTOP was sent (kube-proxy running
// iptables-restore) can take the signal after its exec, under its new
// name: pkill -x alone would leave it stopped for good, and its parent,
// waiting for it, would never follow an endpoint again.
func resumeScript(process string) string {
	return fmt.Sprintf(`pkill -CONT -x %[1]s && for p in $(pgrep -x %[1]s); do pkill -CONT -P $p; done; pgrep -x %[1]s >/dev/null`, comm(process))
}

// comm is the name the kernel keeps for a process (its first 15 bytes),
// which pgrep -x and pkill -x match.
func comm(process string) string { return process[:min(len(process), 15)] }

// PauseKubeProxy stops kube-proxy on every node for d: endpoints that go
// or come meanwhile are not followed, so new connections still reach a
// pod that is terminating, or gone (stale endpoints).
func PauseKubeProxy(d time.Duration, at scenario.FaultAt) scenario.Fault {
	return pause("kube-proxy", fmt.Sprintf("kube-proxy paused %s", d), kubeProxyPaused, d, at)
}

// PauseAPIServer stops the API server for d: nothing written to the
// cluster meanwhile (a deleted pod's endpoint removed, a new pod's
// readiness, the next step of the rollout) is seen until it resumes,
// while the kubelets go on stopping the pods they were told to stop.
func PauseAPIServer(d time.Duration, at scenario.FaultAt) scenario.Fault {
	return pause("kube-apiserver", fmt.Sprintf("API server paused %s", d), apiServerPaused, d, at)
}

// PauseControllerManager stops kube-controller-manager for d, and with
// it the EndpointSlice controller (slow EndpointSlice propagation): a
// deleted pod stays a ready endpoint and a new pod's readiness is not
// published, so kube-proxy, up to date with the slices, sends new
// connections to a pod that is terminating, or gone. The rollout waits
// too (the Deployment and ReplicaSet controllers are stopped with it).
func PauseControllerManager(d time.Duration, at scenario.FaultAt) scenario.Fault {
	return pause("kube-controller-manager", fmt.Sprintf("EndpointSlice updates paused %s (kube-controller-manager stopped)", d), endpointSlicesPaused, d, at)
}

// pause stops process on every node that runs it, for d.
func pause(process, name, mechanism string, d time.Duration, at scenario.FaultAt) scenario.Fault {
	stop := fmt.Sprintf(`if pkill -STOP -x %s; then echo stopped; fi`, comm(process))
	return scenario.Fault{
		Name: name, At: at, For: d, NeedsNodes: true, Mechanism: mechanism,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			shell := l.Env.Nodes
			nodes, err := shell.Nodes(ctx)
			if err != nil {
				return scenario.Injected{}, err
			}
			var stopped []string
			undo := func(ctx context.Context) error {
				var errs []error
				for _, n := range stopped {
					if _, err := shell.Run(ctx, n, resumeScript(process)); err != nil {
						errs = append(errs, fmt.Errorf("resuming %s on %s: %w", process, n, err))
					}
				}
				return errors.Join(errs...)
			}
			for _, n := range nodes {
				out, err := shell.Run(ctx, n, stop)
				if strings.TrimSpace(out) == "stopped" {
					stopped = append(stopped, n)
				}
				if err != nil {
					return scenario.Injected{}, errors.Join(fmt.Errorf("pausing %s on %s: %w", process, n, err), undo(context.WithoutCancel(ctx)))
				}
			}
			if len(stopped) == 0 {
				return scenario.Injected{}, fmt.Errorf("no %s process on any node", process)
			}
			return scenario.Injected{Undo: undo}, nil
		},
	}
}

// KillPod SIGKILLs the main process of the first container of one
// serving pod (ready, not terminating; the oldest, so mid-rollout an old
// one), as the kernel's OOM killer would. The kubelet restarts it.
func KillPod(at scenario.FaultAt) scenario.Fault {
	return signalPod("SIGKILL to a serving pod's container", "SIGKILL", at)
}

// CrashPod makes one serving pod's app crash: its main process gets
// SIGABRT, what a failed assertion or a Go program's fatal error raises,
// and dies (a Go program after printing its goroutines; a C program with
// a core) with nothing drained. The kubelet restarts it. A process that
// ignores SIGABRT (a PID 1 with no handler for it) does not crash: the
// run then loses nothing to the fault, and its timeline says the
// container never exited.
func CrashPod(at scenario.FaultAt) scenario.Fault {
	return signalPod("crash (SIGABRT) of a serving pod's app", "SIGABRT", at)
}

// signalPod sends sig to the main process of the first container of the
// oldest serving pod, through containerd on its node.
func signalPod(name, sig string, at scenario.FaultAt) scenario.Fault {
	return scenario.Fault{
		Name: name, At: at, NeedsNodes: true, Mechanism: appDied,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			pod, err := servingPod(ctx, l)
			if err != nil {
				return scenario.Injected{}, err
			}
			id, err := containerID(pod)
			if err != nil {
				return scenario.Injected{}, err
			}
			if _, err := l.Env.Nodes.Run(ctx, pod.Spec.NodeName, "ctr --namespace=k8s.io task kill --signal "+sig+" "+id); err != nil {
				return scenario.Injected{}, fmt.Errorf("sending %s to pod %s: %w", sig, pod.Name, err)
			}
			return scenario.Injected{Pod: pod.Name}, nil
		},
	}
}

// servingPod is the oldest serving pod of the Deployment (ready, not
// terminating): mid-rollout an old one.
func servingPod(ctx context.Context, l *scenario.Live) (*corev1.Pod, error) {
	pods, err := l.Pods(ctx)
	if err != nil {
		return nil, err
	}
	pod := oldestServing(pods)
	if pod == nil {
		return nil, fmt.Errorf("no pod of deployment %s is serving (ready and not terminating)", l.Deployment)
	}
	return pod, nil
}

func oldestServing(pods []corev1.Pod) *corev1.Pod {
	var serving []*corev1.Pod
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && kube.PodReady(&pods[i]) {
			serving = append(serving, &pods[i])
		}
	}
	if len(serving) == 0 {
		return nil
	}
	return slices.MinFunc(serving, func(a, b *corev1.Pod) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
}

// containerID is the containerd ID of the pod's first container.
func containerID(pod *corev1.Pod) (string, error) {
	name := pod.Spec.Containers[0].Name
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name != name {
			continue
		}
		if id, ok := strings.CutPrefix(s.ContainerID, "containerd://"); ok && id != "" {
			return id, nil
		}
		return "", fmt.Errorf("container %s of pod %s runs under %q, not containerd", name, pod.Name, s.ContainerID)
	}
	return "", fmt.Errorf("pod %s has no status for container %s", pod.Name, name)
}

// Resume undoes what a run killed outright (SIGKILL, a lost session)
// left behind: a node paused, a kube-proxy or an API server stopped. It says what
// it resumed where ("kube-proxy on nodrop-control-plane"); `nodrop
// cluster up` calls it.
func Resume(ctx context.Context, shell scenario.NodeShell) ([]string, error) {
	var resumed []string
	// A paused node runs nothing, not even the script below.
	if p, ok := shell.(NodePauser); ok {
		paused, err := p.PausedNodes(ctx)
		if err != nil {
			return nil, err
		}
		for _, n := range paused {
			if err := p.PauseNode(ctx, n, false); err != nil {
				return resumed, err
			}
			resumed = append(resumed, "node "+n)
		}
	}
	nodes, err := shell.Nodes(ctx)
	if err != nil {
		return resumed, err
	}
	for _, n := range nodes {
		out, err := shell.Run(ctx, n, resumeStopped)
		if err != nil {
			return resumed, fmt.Errorf("resuming a stopped process: %w", err)
		}
		for _, p := range strings.Fields(out) {
			// A process and its stopped child say the same name.
			if what := p + " on " + n; !slices.Contains(resumed, what) {
				resumed = append(resumed, what)
			}
		}
	}
	return resumed, nil
}

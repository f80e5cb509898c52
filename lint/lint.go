// Package lint reviews a workload's manifests and images the way an
// experienced reviewer would, before anything runs: each finding names
// the mechanism that loses requests, the catalogue variant that measures
// it, and what to change. Static linters stop at "a probe exists"; these
// findings say what it costs. `nodrop check` then confirms or refutes
// them on a cluster.
package lint

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nodrop-dev/nodrop/fixtures"
)

// Kind sorts findings: Loss loses requests in a rollout; Availability
// in other disruptions (a drain); Hardening is about security, not loss.
type Kind string

// Finding kinds.
const (
	Loss         Kind = "loss"
	Availability Kind = "availability"
	Hardening    Kind = "hardening"
)

// Finding is one thing a reviewer would flag.
type Finding struct {
	Kind   Kind   `json:"kind"`
	Rule   string `json:"rule"`
	Object string `json:"object"`
	// Message is what is wrong and what it costs; Fix what to change.
	Message string `json:"message"`
	Fix     string `json:"fix"`
	// Variant is the catalogue variant that measures the mechanism, and
	// Measured its verdict in each load mode.
	Variant  string `json:"variant,omitempty"`
	Measured string `json:"measured,omitempty"`
}

// ImageConfig is what an image runs: its ENTRYPOINT and CMD.
type ImageConfig struct {
	Entrypoint, Cmd []string
}

// Options tune a review.
type Options struct {
	// Deployment is the one reviewed; "" reviews every Deployment.
	Deployment string
	// Images looks up an image's configuration; nil skips image checks.
	// It returns false when the image is not available to inspect.
	Images func(ref string) (ImageConfig, bool)
}

// Check reviews the Deployments among objs.
func Check(objs []*unstructured.Unstructured, o Options) []Finding {
	var deps []*appsv1.Deployment
	var pdbs []*policyv1.PodDisruptionBudget
	var svcs []*corev1.Service
	for _, u := range objs {
		switch u.GroupVersionKind().GroupKind().String() {
		case "Deployment.apps":
			d := &appsv1.Deployment{}
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, d) == nil && (o.Deployment == "" || d.Name == o.Deployment) {
				deps = append(deps, d)
			}
		case "Service":
			s := &corev1.Service{}
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, s) == nil {
				svcs = append(svcs, s)
			}
		case "PodDisruptionBudget.policy":
			p := &policyv1.PodDisruptionBudget{}
			if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, p) == nil {
				pdbs = append(pdbs, p)
			}
		}
	}
	var out []Finding
	for _, d := range deps {
		out = append(out, checkDeployment(d, pdbs, services(d, svcs), o)...)
	}
	return out
}

func measured(variant string) string {
	v, err := fixtures.Lookup(variant)
	if err != nil {
		return ""
	}
	var parts []string
	for _, m := range v.Modes() {
		name := string(m)
		switch m {
		case fixtures.KeepAlive:
			name = "kept-alive load"
		case fixtures.Fresh:
			name = "fresh connections"
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, v.Expects(m)))
	}
	return strings.Join(parts, ", ")
}

func checkDeployment(d *appsv1.Deployment, pdbs []*policyv1.PodDisruptionBudget, svcs []*corev1.Service, o Options) []Finding {
	var out []Finding
	obj := "deployment/" + d.Name
	add := func(k Kind, rule, object, msg, fix, variant string) {
		out = append(out, Finding{Kind: k, Rule: rule, Object: object, Message: msg, Fix: fix, Variant: variant, Measured: measured(variant)})
	}
	spec := d.Spec.Template.Spec
	// A container that serves nothing needs no probe or preStop.
	cs, roles := servingContainers(spec, svcs)
	for i, c := range cs {
		checkContainer(c, roles[i], obj+", container "+c.Name, spec, svcs, o, &out)
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if s := d.Spec.Strategy; s.Type != appsv1.RecreateDeploymentStrategyType {
		maxUnavail := intstr.FromString("25%")
		if s.RollingUpdate != nil && s.RollingUpdate.MaxUnavailable != nil {
			maxUnavail = *s.RollingUpdate.MaxUnavailable
		}
		if n, err := intstr.GetScaledValueFromIntOrPercent(&maxUnavail, int(replicas), false); err == nil && n >= int(replicas) {
			add(Loss, "all-replicas-unavailable", obj,
				fmt.Sprintf("%d replica(s) with maxUnavailable %s: the rollout may take every pod out of service before a new one is ready; nothing answers in between", replicas, maxUnavail.String()),
				"set maxUnavailable: 0 and maxSurge: 1, so a new pod is ready before an old one goes", "single-replica-max-unavailable")
		}
	} else {
		add(Loss, "recreate-strategy", obj, "strategy Recreate stops every old pod before starting new ones: nothing answers in between", "use RollingUpdate with maxUnavailable: 0 and maxSurge: 1", "")
	}
	for _, s := range svcs {
		if p := s.Spec.InternalTrafficPolicy; p != nil && *p == corev1.ServiceInternalTrafficPolicyLocal {
			add(Loss, "internal-traffic-local", "service/"+s.Name,
				"internalTrafficPolicy: Local sends each client in the cluster only to pods on its own node: while a rollout replaces a node's pod, that node's clients have no pod to go to and their connections are dropped (they time out), whatever the other nodes have; clients outside the cluster (a NodePort, a load balancer) do not show it",
				"use internalTrafficPolicy: Cluster; Local suits a DaemonSet rolled with maxSurge 1 and maxUnavailable 0, which keeps a ready pod on every node (check it with nodrop check --load-from cluster)", "")
		}
	}
	if !hasPDB(d, pdbs) {
		out = append(out, Finding{Kind: Availability, Rule: "no-pdb", Object: obj,
			Message: "no PodDisruptionBudget selects its pods: a node drain may evict every replica at once (a rollout does not consult it)",
			Fix:     "add a PodDisruptionBudget with minAvailable: 1 (and run at least 2 replicas)"})
	}
	return out
}

// checkContainer reviews one serving container of a pod in its role,
// adding its findings to out.
func checkContainer(c corev1.Container, r role, where string, spec corev1.PodSpec, svcs []*corev1.Service, o Options, out *[]Finding) {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	add := func(k Kind, rule, object, msg, fix, variant string) {
		*out = append(*out, Finding{Kind: k, Rule: rule, Object: object, Message: msg, Fix: fix, Variant: variant, Measured: measured(variant)})
	}
	grpc, isGRPC := grpcPort(c, svcs)
	if r != roleApp {
		sidecarFindings(c, r, spec, where, add)
	}
	switch {
	case r != roleApp:
		// Its readiness is the sidecar findings'.
	case isGRPC && (c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket != nil):
		rule, msg, fix, variant := grpcReadiness(grpc.ContainerPort, c.ReadinessProbe != nil)
		add(Loss, rule, where, msg, fix, variant)
	case c.ReadinessProbe == nil:
		add(Loss, "no-readiness-probe", where,
			"no readiness probe: a new pod becomes an endpoint as soon as its container starts, before the app serves; requests sent to it then are refused",
			"add an HTTP readiness probe on a path that answers only once the app serves", "no-readiness")
	case c.ReadinessProbe.TCPSocket != nil:
		add(Loss, "tcp-readiness-probe", where,
			"TCP readiness probe: it passes once the port is open; an app (or framework) that opens its port before it is ready gets requests it answers with errors or refusals",
			"probe an HTTP path that answers only once the app serves (or make sure the port opens last)", "tcp-readiness-early-listen")
	}
	preStop := preStopSeconds(c)
	switch {
	case r != roleApp:
		// A sidecar's stop is the sidecar findings' (a grace period too
		// short for its preStop is the app's finding too).
	case c.Lifecycle == nil || c.Lifecycle.PreStop == nil:
		msg, variant := "no preStop hook: SIGTERM arrives as the pod is deleted, while kube-proxy and load balancers still send it new requests for a second or more", "no-prestop"
		if isGRPC {
			msg, variant = grpcNoPreStop, "grpc-no-prestop"
		}
		add(Loss, "no-prestop", where, msg,
			"add a preStop sleep (lifecycle.preStop.sleep.seconds: 5, or exec [sleep, 5] in images with sleep) so the pod keeps serving until its endpoint is gone everywhere", variant)
	case preStop >= grace:
		add(Loss, "grace-shorter-than-prestop", where,
			fmt.Sprintf("terminationGracePeriodSeconds (%d) is not longer than the preStop hook (%d s): the kubelet kills the container with SIGKILL before the app has drained, cutting the requests on its connections", grace, preStop),
			fmt.Sprintf("set terminationGracePeriodSeconds above preStop + the app's drain time (e.g. %d)", preStop+20), "grace-shorter-than-prestop")
	}
	if isShellForm(c.Command, c.Args) {
		add(Loss, "shell-form-command", where,
			"the container's command runs through a shell (sh -c): the shell is PID 1 and does not pass SIGTERM on, so the app is SIGKILLed at the end of the grace period, cutting its connections",
			`use the exec form (command: ["/app", ...]) or start the app with "exec" in the script, or run an init such as tini`, "shell-form-cmd")
	} else if len(c.Command) == 0 && o.Images != nil {
		if img, ok := o.Images(c.Image); ok {
			if f, bad := imageFinding(img, c.Args); bad {
				f.Object = where + " (image " + c.Image + ")"
				f.Measured = measured(f.Variant)
				*out = append(*out, f)
			}
		}
	}
	if isGRPC {
		if f, ok := pinnedConnections(where, grpc, svcs); ok {
			*out = append(*out, f)
		}
		if f, ok := resolvingClients(where, grpc, svcs, preStop); ok && r == roleApp {
			f.Measured = measured(f.Variant)
			*out = append(*out, f)
		}
	}
	if missing := hardeningMissing(spec.SecurityContext, c.SecurityContext); len(missing) > 0 {
		*out = append(*out, Finding{Kind: Hardening, Rule: "restricted-security-context", Object: where,
			Message: "not restricted (Pod Security Standard): " + strings.Join(missing, ", "),
			Fix:     "set runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities.drop: [ALL], readOnlyRootFilesystem: true and seccompProfile.type: RuntimeDefault"})
	}
}

// preStopSeconds is how long a preStop hook sleeps, when it says (a
// sleep action, or exec sleep N); 0 otherwise.
func preStopSeconds(c corev1.Container) int64 {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return h.Sleep.Seconds
	}
	if h.Exec != nil {
		cmd := h.Exec.Command
		for i := 0; i+1 < len(cmd); i++ {
			if path.Base(cmd[i]) == "sleep" {
				var n int64
				if _, err := fmt.Sscanf(cmd[i+1], "%d", &n); err == nil {
					return n
				}
			}
		}
		if len(cmd) == 3 && isShell(cmd[0]) && cmd[1] == "-c" {
			var n int64
			if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(cmd[2]), "sleep")), "%d", &n); err == nil {
				return n
			}
		}
	}
	return 0
}

func isShell(p string) bool {
	switch path.Base(p) {
	case "sh", "bash", "dash", "ash", "zsh":
		return true
	}
	return false
}

// isShellForm: a command run through a shell that does not exec it.
func isShellForm(command, args []string) bool {
	all := append(append([]string{}, command...), args...)
	if len(all) >= 3 && isShell(all[0]) && all[1] == "-c" {
		return !strings.HasPrefix(strings.TrimSpace(all[2]), "exec ")
	}
	return false
}

// imageFinding reviews what the image runs when the manifest does not
// say: a shell-form CMD or ENTRYPOINT, or a shell script as PID 1.
func imageFinding(img ImageConfig, args []string) (Finding, bool) {
	run := img.Entrypoint
	if len(run) == 0 {
		run = img.Cmd
	}
	if len(args) > 0 && len(img.Entrypoint) == 0 {
		run = args
	}
	if isShellForm(run, nil) {
		return Finding{Kind: Loss, Rule: "shell-form-cmd",
			Message: fmt.Sprintf("the image's %s is in shell form (%s): /bin/sh is PID 1 and does not pass SIGTERM on, so the app is SIGKILLed at the end of the grace period", entryName(img), strings.Join(run, " ")),
			Fix:     `use the exec form (CMD ["/app"]) or an init such as tini as the ENTRYPOINT`, Variant: "shell-form-cmd"}, true
	}
	if len(run) > 0 && strings.HasSuffix(run[0], ".sh") {
		return Finding{Kind: Loss, Rule: "shell-script-pid1",
			Message: fmt.Sprintf("the image runs a shell script as PID 1 (%s): unless it ends in `exec` the shell stays PID 1 and SIGTERM never reaches the app", run[0]),
			Fix:     "end the script with `exec your-server` (or run an init such as tini)", Variant: "start-sh-no-exec"}, true
	}
	return Finding{}, false
}

func entryName(img ImageConfig) string {
	if len(img.Entrypoint) > 0 {
		return "ENTRYPOINT"
	}
	return "CMD"
}

func hardeningMissing(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) []string {
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if c == nil {
		c = &corev1.SecurityContext{}
	}
	var missing []string
	if !isTrue(c.RunAsNonRoot) && !isTrue(pod.RunAsNonRoot) {
		missing = append(missing, "runAsNonRoot")
	}
	if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		missing = append(missing, "allowPrivilegeEscalation: false")
	}
	if c.Capabilities == nil || !dropsAll(c.Capabilities.Drop) {
		missing = append(missing, "capabilities.drop: [ALL]")
	}
	if !isTrue(c.ReadOnlyRootFilesystem) {
		missing = append(missing, "readOnlyRootFilesystem")
	}
	if c.SeccompProfile == nil && pod.SeccompProfile == nil {
		missing = append(missing, "seccompProfile")
	}
	return missing
}

func dropsAll(caps []corev1.Capability) bool {
	for _, c := range caps {
		if strings.EqualFold(string(c), "ALL") {
			return true
		}
	}
	return false
}

func isTrue(b *bool) bool { return b != nil && *b }

func hasPDB(d *appsv1.Deployment, pdbs []*policyv1.PodDisruptionBudget) bool {
	for _, p := range pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			return true
		}
	}
	return false
}

// Write prints findings, loss first, one block each.
func Write(w io.Writer, fs []Finding) {
	for _, k := range []Kind{Loss, Availability, Hardening} {
		for _, f := range fs {
			if f.Kind != k {
				continue
			}
			fmt.Fprintf(w, "  [%s] %s: %s\n", f.Kind, f.Object, f.Message)
			fmt.Fprintf(w, "      fix: %s\n", f.Fix)
			if f.Variant != "" {
				fmt.Fprintf(w, "      measured by nodrop's variant %s: %s (nodrop render %s)\n", f.Variant, f.Measured, f.Variant)
			}
		}
	}
}

// LocalImage reports whether the local Docker engine has ref.
func LocalImage(ctx context.Context, ref string) bool {
	_, ok := inspect(ctx, ref)
	return ok
}

// LocalImages reads an image's configuration from the local Docker
// engine (what `docker image inspect` shows).
func LocalImages(ref string) (ImageConfig, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return inspect(ctx, ref)
}

func inspect(ctx context.Context, ref string) (ImageConfig, bool) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{json .Config}}", ref).Output()
	if err != nil {
		return ImageConfig{}, false
	}
	var cfg struct{ Entrypoint, Cmd []string }
	if json.Unmarshal(out, &cfg) != nil {
		return ImageConfig{}, false
	}
	return ImageConfig{Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd}, true
}

package lint

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nodrop-dev/nodrop/fixtures"
)

// The catalogue is the other side of every finding: the lossy variant a
// rule names must be flagged by that rule, its lossless twin must not,
// and every rendered variant meets the restricted Pod Security Standard.
func TestFindingsMatchTheCatalogue(t *testing.T) {
	// What `docker image inspect` says each image variant runs.
	imageConfigs := map[string]ImageConfig{
		"exec-form":        {Entrypoint: []string{"/app"}},
		"shell-form":       {Cmd: []string{"/bin/sh", "-c", "/app"}},
		"start-sh-exec":    {Entrypoint: []string{"/start.sh"}},
		"start-sh-no-exec": {Entrypoint: []string{"/start.sh"}},
		"tini":             {Entrypoint: []string{"/usr/bin/tini", "--", "/app"}},
	}
	want := map[string][]string{
		"baseline-good":              nil,
		"no-readiness":               {"no-readiness-probe"},
		"tcp-readiness-early-listen": {"tcp-readiness-probe"},
		"no-prestop":                 {"no-prestop"},
		"shell-form-cmd":             {"shell-form-cmd"},
		"start-sh-no-exec":           {"shell-script-pid1"},
		"tini-init":                  nil,
		"exec-readiness":             nil,
		"startup-probe":              nil,
		"exec-prestop":               {"shell-script-pid1"}, // start.sh, as start-sh-exec
		// lint cannot see when the app opens its port, nor how it stops.
		"tcp-readiness-late-listen": {"tcp-readiness-probe"},
		"no-graceful-shutdown":      nil,
		// lint cannot read the script inside the image: it asks whether
		// it ends in exec, for both twins.
		"start-sh-exec":                  {"shell-script-pid1"},
		"grace-shorter-than-prestop":     {"grace-shorter-than-prestop", "shell-script-pid1"},
		"single-replica-max-unavailable": {"all-replicas-unavailable"},
		"single-replica-surge":           nil,
		// lint cannot see how a server stops (Stop, streams left open).
		"grpc-baseline":                       nil,
		"grpc-max-connection-age":             nil,
		"grpc-round-robin":                    {"grpc-headless-short-prestop"},
		"grpc-round-robin-long-prestop":       nil,
		"grpc-round-robin-no-prestop":         {"no-prestop", "grpc-headless-short-prestop"},
		"grpc-round-robin-hard-stop":          nil,
		"grpc-round-robin-stream-blocks-stop": nil,
		"grpc-round-robin-tcp-readiness":      {"tcp-readiness-probe"},
		"grpc-round-robin-native-probe":       nil,
		"grpc-round-robin-no-readiness":       {"no-readiness-probe"},
		"grpc-no-readiness":                   {"no-readiness-probe"},
		"grpc-no-prestop":                     {"no-prestop"},
		"grpc-hard-stop":                      nil,
		"grpc-bounded-stop":                   nil,
		"grpc-stream-blocks-stop":             nil,
		"grpc-tcp-readiness":                  {"tcp-readiness-probe"},
		"grpc-native-probe":                   nil,
		// A proxy in the pod the Service sends to: stopped with the app,
		// or not part of the pod's readiness. lint cannot see whether a
		// native sidecar passes the app's drain on to its clients.
		"sidecar-no-prestop":               {"no-prestop", "sidecar-stops-with-app"},
		"sidecar-prestop-app-only":         {"sidecar-stops-with-app"},
		"sidecar-prestop-both":             nil,
		"native-sidecar":                   nil,
		"native-sidecar-keeps-connections": nil,
		"sidecar-slow-start":               {"sidecar-not-in-readiness"},
		"native-sidecar-startup-probe":     nil,
	}
	for _, v := range fixtures.Catalogue {
		if _, ok := want[v.Name]; !ok {
			t.Errorf("variant %s: say what lint finds in it", v.Name)
		}
	}
	for name, rules := range want {
		v, err := fixtures.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		var refs []string
		for _, variant := range v.Images() {
			refs = append(refs, "nodrop/app:"+variant)
		}
		objs, err := v.Render("ns", refs[0], refs[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		list, err := objs.Unstructured()
		if err != nil {
			t.Fatal(err)
		}
		cfg := imageConfigs[v.ImageVariant]
		fs := Check(list, Options{Images: func(string) (ImageConfig, bool) { return cfg, true }})
		var got []string
		for _, f := range fs {
			switch f.Kind {
			case Loss:
				got = append(got, f.Rule)
			case Hardening:
				t.Errorf("%s: %s %s", name, f.Object, f.Message)
			}
		}
		slices.Sort(got)
		slices.Sort(rules)
		if !slices.Equal(got, rules) {
			t.Errorf("%s: loss findings %v, want %v", name, got, rules)
		}
	}
}

// A Service that keeps each node's clients on that node's pods loses
// them while a rollout replaces the node's pod: found, and the finding
// says what shows it.
func TestInternalTrafficLocalIsFound(t *testing.T) {
	native := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}
	objs := longPreStop(t, grpcApp(t, native, true, true, "api"))
	if err := unstructured.SetNestedField(objs[1].Object, "Local", "spec", "internalTrafficPolicy"); err != nil {
		t.Fatal(err)
	}
	var found []Finding
	for _, f := range Check(objs, Options{}) {
		if f.Kind == Loss {
			found = append(found, f)
		}
	}
	if len(found) != 1 || found[0].Rule != "internal-traffic-local" || found[0].Object != "service/api" || !strings.Contains(found[0].Fix, "--load-from cluster") {
		t.Errorf("findings %+v, want internal-traffic-local on service/api", found)
	}
}

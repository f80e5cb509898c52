package kruise

import (
	"context"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// The overlay over the module's own config/default renders what an
// offline cluster needs (OFFLINE-KRUISE.md): nodrop's image never pulled,
// no daemon, the webhook port, /tmp and /log, Ignore on the pod webhooks.
func TestManifestsFromTheModulesOwnConfig(t *testing.T) {
	cache, err := cachedir.Dir()
	if err != nil {
		t.Fatal(err)
	}
	src, err := Source(context.Background(), Options{CacheDir: cache, Log: progress.New(os.Stderr, false)})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Manifests(&Built{Image: "nodrop/kruise-manager:v1.8.0-abc", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var manager, mutating *unstructured.Unstructured
	crds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()]++
		switch {
		case o.GetKind() == "Deployment" && o.GetName() == Deployment:
			manager = o
		case o.GetKind() == "MutatingWebhookConfiguration" && o.GetName() == MutatingWebhook:
			mutating = o
		case o.GetKind() == "CustomResourceDefinition":
			crds[o.GetName()] = true
		}
	}
	if kinds["DaemonSet"] != 0 || manager == nil || mutating == nil || !crds["sidecarsets.apps.kruise.io"] {
		t.Fatalf("kinds %v, manager %v, mutating webhook %v, sidecarset CRD %v", kinds, manager != nil, mutating != nil, crds["sidecarsets.apps.kruise.io"])
	}
	c := manager.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if c["image"] != "nodrop/kruise-manager:v1.8.0-abc" || c["imagePullPolicy"] != "Never" {
		t.Errorf("manager image %v, pull policy %v", c["image"], c["imagePullPolicy"])
	}
	mounts := map[string]bool{}
	for _, m := range c["volumeMounts"].([]any) {
		mounts[m.(map[string]any)["mountPath"].(string)] = true
	}
	if !mounts["/tmp"] || !mounts["/log"] {
		t.Errorf("mounts %v; want /tmp and /log", mounts)
	}
	for _, w := range mutating.Object["webhooks"].([]any) {
		w := w.(map[string]any)
		if w["name"] == "mpod.kb.io" && w["failurePolicy"] != "Ignore" {
			t.Errorf("mpod.kb.io failurePolicy %v, want Ignore", w["failurePolicy"])
		}
	}
	t.Logf("%d objects: %v", len(objs), kinds)
}

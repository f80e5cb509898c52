package traefik

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The controller's objects: where it lives, what its provider may read,
// the class it serves, and a Deployment that runs nothing but the loaded
// image, as nobody, with the flags that say where and nothing sent home.
func TestObjectsInstallOneControllerForItsOwnClass(t *testing.T) {
	objs, err := Objects("nodrop/traefik:test")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		switch o.GetKind() {
		case "IngressClass":
			if o.GetName() != Class {
				t.Errorf("class %s", o.GetName())
			}
		case "Deployment":
			if o.GetNamespace() != Namespace || o.GetName() != Name {
				t.Errorf("deployment %s/%s", o.GetNamespace(), o.GetName())
			}
		}
	}
	want := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "IngressClass", "Deployment", "Service"}
	if !slices.Equal(kinds, want) {
		t.Errorf("kinds %v, want %v (the namespace first, so the rest has a place)", kinds, want)
	}
	args := strings.Join(Args(), " ")
	for _, a := range []string{"--providers.kubernetesingress.ingressClass=" + Class, "--global.sendAnonymousUsage=false", "--global.checkNewVersion=false", "--ping=true"} {
		if !strings.Contains(args, a) {
			t.Errorf("args lack %s: %s", a, args)
		}
	}
	ctr := deployment(metav1.ObjectMeta{Name: Name}, "img").Spec.Template.Spec.Containers[0]
	if sc := ctr.SecurityContext; ctr.Image != "img" || ctr.ImagePullPolicy != corev1.PullNever || sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
		t.Errorf("container %+v", ctr)
	}
	c := Controller()
	if c.Class != Class || c.Namespace != Namespace || c.Deployment != Name || c.Service != Name || c.Port != "web" || c.API != "admin" {
		t.Errorf("controller %+v", c)
	}
}

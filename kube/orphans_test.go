package kube

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// deadPID is the pid of a process that has exited.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestOrphansAreOnlyNamespacesOfDeadProcessesOnThisHost(t *testing.T) {
	host, _ := os.Hostname()
	dead := deadPID(t)
	ns := func(name, owner string, partOf bool) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
		if partOf {
			n.Labels["app.kubernetes.io/part-of"] = "nodrop"
		}
		if owner != "" {
			n.Annotations = map[string]string{OwnerAnnotation: owner}
		}
		return n
	}
	c := fake.NewClientset(
		ns("killed", host+"/"+strconv.Itoa(dead), true),
		ns("running", thisProcess(), true),
		ns("other-host", "elsewhere/"+strconv.Itoa(dead), true),
		ns("kept", "", true),
		ns("not-ours", host+"/"+strconv.Itoa(dead), false),
		ns("garbled", host+"/x", true),
	)
	got, err := DeleteOrphans(context.Background(), c, DefaultTimeouts())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"killed"}) {
		t.Fatalf("orphans = %v, want [killed]", got)
	}
	list, _ := c.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	var left []string
	for _, n := range list.Items {
		left = append(left, n.Name)
	}
	slices.Sort(left)
	if want := []string{"garbled", "kept", "not-ours", "other-host", "running"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestCreateNamespaceMarksItsOwnerAndDisownKeepsIt(t *testing.T) {
	c := fake.NewClientset()
	name, err := CreateNamespace(context.Background(), c, "run", PodSecurityNone)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if ns.Annotations[OwnerAnnotation] != thisProcess() {
		t.Fatalf("owner %q, want %q", ns.Annotations[OwnerAnnotation], thisProcess())
	}
	if err := Disown(context.Background(), c, name); err != nil {
		t.Fatal(err)
	}
	ns, _ = c.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{})
	if _, ok := ns.Annotations[OwnerAnnotation]; ok {
		t.Errorf("a kept namespace still names its owner: %v", ns.Annotations)
	}
}

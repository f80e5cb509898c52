package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// Only a program's first argument makes it the create helper.
func TestCreateHelperOnlyForItsArgument(t *testing.T) {
	for _, args := range [][]string{nil, {"cluster", "up"}, {"--name", CreateArg}} {
		if _, ok := CreateHelper(args); ok {
			t.Errorf("%q taken for the create helper", args)
		}
	}
	if code, ok := CreateHelper([]string{CreateArg, "--no-such-flag"}); !ok || code != 2 {
		t.Errorf("bad flags: code %d, helper %v; want 2, true", code, ok)
	}
}

// kind's lines become progress lines, without the network warnings, and
// the helper's error line is the error.
func TestRelaySaysKindLinesAndKeepsTheError(t *testing.T) {
	in := strings.Join([]string{
		"  kind: Ensuring node image (nodrop/node:v1) 🖼",
		"  kind: WARNING: Overriding docker network due to KIND_EXPERIMENTAL_DOCKER_NETWORK",
		"  kind: WARNING: Here be dragons! This is not supported currently.",
		"",
		createErrPrefix + "failed to create cluster: node(s) already exist",
	}, "\n")
	var out bytes.Buffer
	why := relay(strings.NewReader(in), progress.New(&out, false))
	if want := "  kind: Ensuring node image (nodrop/node:v1) 🖼\n"; out.String() != want {
		t.Errorf("relayed %q, want %q", out.String(), want)
	}
	if why != "failed to create cluster: node(s) already exist" {
		t.Errorf("error %q", why)
	}
}

// Without a program to run it in, nothing is created and the error says
// what is missing.
func TestCreateNeedsAProgram(t *testing.T) {
	err := create(context.Background(), Options{}, "x", nil, t.TempDir()+"/kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "Options.Program") {
		t.Errorf("err %v", err)
	}
}

func TestMain(m *testing.M) {
	if code, ok := CreateHelper(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// The create runs in the program named, which must be the helper: kind's
// answer (here: no such node image, or no Docker) comes back as the error.
func TestCreateRunsInTheHelper(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = create(context.Background(), Options{Program: self, NodeImage: "nodrop-test/no-such-image:0"}, "nodrop-test-none", []byte("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"), filepath.Join(dir, "kubeconfig"))
	if err == nil || strings.Contains(err.Error(), "did not start") {
		t.Fatalf("err %v; want kind's own error from the helper", err)
	}
	t.Logf("kind said: %v", err)
	// A program that is not the helper is stopped before it does anything.
	err = create(context.Background(), Options{Program: "/bin/echo"}, "x", nil, filepath.Join(dir, "kubeconfig"))
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Errorf("err %v; want the program refused as no helper", err)
	}
}

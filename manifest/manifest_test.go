package manifest

import (
	"os"
	"path/filepath"
	"testing"
)

func names(t *testing.T, files, kustomizations []string) []string {
	t.Helper()
	objs, err := Read(nil, files, kustomizations)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func TestReadsDocumentsListsDirectoriesAndKustomizations(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n---\n\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: two}}\n- {apiVersion: v1, kind: Secret, metadata: {name: three}}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "four"}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a manifest"), 0o644)
	got := names(t, []string{dir}, []string{"testdata/kustomize"})
	want := []string{"ConfigMap/one", "Secret/two", "Secret/three", "ServiceAccount/four", "ConfigMap/staging-conf", "Service/staging-web"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestEmptyManifestsAreAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "empty.yaml")
	os.WriteFile(p, []byte("---\n# nothing\n"), 0o644)
	if _, err := Read(nil, []string{p}, nil); err == nil {
		t.Fatal("no objects must be an error")
	}
}

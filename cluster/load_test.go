package cluster

import "testing"

func TestNormalizeAsContainerdStoresIt(t *testing.T) {
	for ref, want := range map[string]string{
		"nodrop/app:v1":                  "docker.io/nodrop/app:v1",
		"nginx:1.27":                     "docker.io/library/nginx:1.27",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io/pause:3.10",
		"localhost:5000/nodrop/proxy:v2": "localhost:5000/nodrop/proxy:v2",
		"localhost/x:1":                  "localhost/x:1",
	} {
		if got := normalize(ref); got != want {
			t.Errorf("normalize(%q) = %q, want %q", ref, got, want)
		}
	}
}

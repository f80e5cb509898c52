// Package manifest reads the Kubernetes objects a user brings: YAML or
// JSON files (several documents each, List kinds unpacked) and kustomize
// directories, built with kustomize's own library as `kubectl apply -k`
// would.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Stdin is the file name that means standard input (kubectl's
// convention: helm template … | nodrop check -f -).
const Stdin = "-"

// Read reads every object of the files (a directory means its *.yaml,
// *.yml and *.json files; Stdin means stdin, once) and of the kustomize
// directories, in order.
func Read(stdin io.Reader, files, kustomizations []string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	readStdin := false
	for _, f := range files {
		if f == Stdin {
			if readStdin {
				return nil, errors.New("-f - (standard input) is named more than once")
			}
			readStdin = true
			if stdin == nil {
				return nil, errors.New("-f -: no standard input")
			}
			raw, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			objs, err := Decode(raw)
			if err != nil {
				return nil, fmt.Errorf("standard input: %w", err)
			}
			if len(objs) == 0 {
				return nil, errors.New("standard input (-f -) holds no object")
			}
			out = append(out, objs...)
			continue
		}
		paths, err := expand(f)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			raw, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", p, err)
			}
			objs, err := Decode(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			out = append(out, objs...)
		}
	}
	for _, dir := range kustomizations {
		objs, err := Kustomize(dir)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	if len(out) == 0 {
		return nil, errors.New("the manifests hold no object")
	}
	return out, nil
}

func expand(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	var out []string
	for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
		m, _ := filepath.Glob(filepath.Join(path, pat))
		out = append(out, m...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no .yaml, .yml or .json file", path)
	}
	return out, nil
}

// Decode reads a stream of YAML or JSON documents.
func Decode(raw []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: not a Kubernetes object (no kind or apiVersion)", i)
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
			for j := range list.Items {
				out = append(out, &list.Items[j])
			}
			continue
		}
		out = append(out, u)
	}
}

// Kustomize builds a kustomize directory.
func Kustomize(dir string) ([]*unstructured.Unstructured, error) {
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	y, err := res.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return Decode(y)
}

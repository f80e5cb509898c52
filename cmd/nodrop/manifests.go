package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nodrop-dev/nodrop/manifest"
)

// chartFlags are the flags that name a Helm chart and its values, as
// helm template takes them.
func chartFlags(f *pflag.FlagSet, c *manifest.Chart) {
	f.StringVar(&c.Path, "chart", "", "a Helm chart (directory or .tgz), rendered as helm template does, offline")
	f.StringArrayVar(&c.Values, "values", nil, "with --chart: a values file; repeatable")
	f.StringArrayVar(&c.Set, "set", nil, "with --chart: a value, key=value; repeatable")
	f.StringVar(&c.Release, "release", "", "with --chart: the release name the templates see (default release-name)")
}

// readManifests reads the objects of the files (- for stdin), kustomize
// directories and chart, in that order.
func readManifests(stdin io.Reader, files, kustomize []string, chart manifest.Chart) ([]*unstructured.Unstructured, error) {
	if chart.Path == "" && (len(chart.Values) > 0 || len(chart.Set) > 0 || chart.Release != "") {
		return nil, errors.New("--values, --set and --release go with --chart")
	}
	var objs []*unstructured.Unstructured
	if len(files) > 0 || len(kustomize) > 0 {
		var err error
		if objs, err = manifest.Read(stdin, files, kustomize); err != nil {
			return nil, err
		}
	}
	if chart.Path != "" {
		rendered, err := manifest.RenderChart(context.Background(), chart)
		if err != nil {
			return nil, err
		}
		objs = append(objs, rendered...)
	}
	return objs, nil
}

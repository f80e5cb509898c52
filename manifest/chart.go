package manifest

import (
	"context"
	"fmt"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Chart is a Helm chart to render, as `helm template` renders it.
type Chart struct {
	// Path is the chart: a directory or a packaged .tgz.
	Path string
	// Release is the release name the templates see (helm template's
	// default, "release-name", when empty).
	Release string
	// Namespace is the namespace the templates see.
	Namespace string
	// Values are values files (-f) and Set are key=value pairs (--set),
	// merged in that order, as helm does.
	Values, Set []string
}

// RenderChart renders a chart with Helm's own library, client-side and
// offline, exactly as `helm template` does (the same install action, its
// hooks included), and reads the objects it makes.
func RenderChart(ctx context.Context, c Chart) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(c.Path)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c.Path, err)
	}
	vals, err := (&values.Options{ValueFiles: c.Values, Values: c.Set}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", c.Path, err)
	}
	inst := action.NewInstall(action.NewConfiguration())
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = c.Release
	if inst.ReleaseName == "" {
		inst.ReleaseName = "release-name"
	}
	inst.Namespace = c.Namespace
	inst.Replace = true
	inst.IncludeCRDs = true
	r, err := inst.RunWithContext(ctx, ch, vals)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c.Path, err)
	}
	rel, ok := r.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("chart %s: rendered as %T, not a release", c.Path, r)
	}
	var b strings.Builder
	b.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		b.WriteString("\n---\n")
		b.WriteString(h.Manifest)
	}
	objs, err := Decode([]byte(b.String()))
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c.Path, err)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("chart %s renders no object", c.Path)
	}
	return objs, nil
}

package manifest

import (
	"context"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
)

// The shop's chart with its default values renders, through Helm's own
// library, exactly the objects of its plain manifests; --set changes what
// it says it changes.
func TestRenderChartAsHelmTemplateDoes(t *testing.T) {
	dir := filepath.Join("..", "examples", "shop")
	plain, err := Read(nil, []string{filepath.Join(dir, "deploy.yaml")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	chart := Chart{Path: filepath.Join(dir, "chart")}
	rendered, err := RenderChart(context.Background(), chart)
	if err != nil {
		t.Fatal(err)
	}
	if len(rendered) != len(plain) {
		t.Fatalf("chart renders %d objects, the manifests hold %d", len(rendered), len(plain))
	}
	byName := map[string]map[string]any{}
	for _, o := range rendered {
		byName[o.GetKind()+"/"+o.GetName()] = o.Object
	}
	for _, o := range plain {
		got, ok := byName[o.GetKind()+"/"+o.GetName()]
		if !ok {
			t.Errorf("the chart does not render %s %s", o.GetKind(), o.GetName())
			continue
		}
		if !equality.Semantic.DeepEqual(got, o.Object) {
			t.Errorf("%s %s differs:\nchart: %v\nplain: %v", o.GetKind(), o.GetName(), got, o.Object)
		}
	}
	chart.Set = []string{"preStopSeconds=0", "replicas=3"}
	rendered, err = RenderChart(context.Background(), chart)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rendered {
		if o.GetKind() != "Deployment" {
			continue
		}
		n, _, _ := unstructuredInt(o.Object, "spec", "replicas")
		if n != 3 {
			t.Errorf("--set replicas=3: %d replicas", n)
		}
		if lc := o.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["lifecycle"]; lc != nil {
			t.Errorf("--set preStopSeconds=0 left a lifecycle: %v", lc)
		}
	}
	if _, err := RenderChart(context.Background(), Chart{Path: filepath.Join(dir, "nowhere")}); err == nil {
		t.Error("a chart that does not exist rendered")
	}
}

func unstructuredInt(obj map[string]any, fields ...string) (int64, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return 0, false, nil
		}
		cur = m[f]
	}
	switch v := cur.(type) {
	case int64:
		return v, true, nil
	case float64:
		return int64(v), true, nil
	}
	return 0, false, nil
}

package kube

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Creator creates objects of any kind the cluster serves.
type Creator struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
}

// NewCreator reads the cluster's kinds lazily, on the first object.
func NewCreator(rc *rest.Config) (*Creator, error) {
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &Creator{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}, nil
}

// Create creates each object in namespace ns, in order, and fails on the
// first it cannot create. Cluster-scoped kinds are refused: everything
// nodrop deploys lives, and is deleted, with its namespace.
func (c *Creator) Create(ctx context.Context, ns string, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: the cluster does not serve this kind: %w", gvk.Kind, o.GetName(), err)
		}
		if m.Scope.Name() != meta.RESTScopeNameNamespace {
			return fmt.Errorf("%s %s is cluster-scoped: nodrop deploys only namespaced objects, into a namespace of its own", gvk.Kind, o.GetName())
		}
		o = o.DeepCopy()
		moveSubjects(o, ns)
		o.SetNamespace(ns)
		if _, err := c.dyn.Resource(m.Resource).Namespace(ns).Create(ctx, o, metav1.CreateOptions{FieldManager: "nodrop"}); err != nil {
			return fmt.Errorf("creating %s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}

// moveSubjects points a RoleBinding's ServiceAccount subjects that lived
// beside it (in the namespace it names, or none) at the run's namespace,
// as kustomize's namespace transformer does: the account moved with it.
// Subjects in other namespaces stay as written.
func moveSubjects(o *unstructured.Unstructured, ns string) {
	if o.GetKind() != "RoleBinding" || o.GroupVersionKind().Group != "rbac.authorization.k8s.io" {
		return
	}
	from := o.GetNamespace()
	subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
	for _, s := range subjects {
		m, ok := s.(map[string]any)
		if !ok || m["kind"] != "ServiceAccount" {
			continue
		}
		if at, _ := m["namespace"].(string); at == "" || at == from || (from == "" && at == "default") {
			m["namespace"] = ns
		}
	}
	if subjects != nil {
		_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
	}
}

// Apply applies each object server-side, in order, where it says it
// lives (cluster-scoped kinds too): for cluster infrastructure nodrop
// installs and keeps (OpenKruise, the ingress controller), not for a
// run's objects. A kind the cluster did not serve is looked up once more
// after reading its kinds again: a CustomResourceDefinition applied
// before it may have added it.
func (c *Creator) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if r, ok := c.mapper.(meta.ResettableRESTMapper); ok && err != nil {
			r.Reset()
			m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		if err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
		if ns := o.GetNamespace(); ns != "" && m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = c.dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "nodrop", Force: true}); err != nil {
			return fmt.Errorf("applying %s %s: %w", gvk.Kind, o.GetName(), err)
		}
	}
	return nil
}

package kube

import (
	"fmt"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

func newDiscovery(rc *rest.Config) (discovery.DiscoveryInterface, error) {
	d, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return d, nil
}

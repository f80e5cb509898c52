// Package nodrop carries what a nodrop binary needs from its source tree
// to set up a cluster from any directory: the sample images' programs,
// Dockerfiles and scripts, and the kind configs. Nothing else in the tree
// is read at run time.
package nodrop

import "embed"

// Sources is the part of the source tree the sample images build from:
// go.mod, the programs under images/ with their Dockerfiles and scripts,
// and the packages they import (rpcwire, lifecycle).
//
//go:embed go.mod rpcwire lifecycle images/app images/init images/proxy images/nginx images/lb
var Sources embed.FS

// KindConfig is the single-node cluster's kind config (kind-config.yaml),
// the default of `nodrop cluster up`.
//
//go:embed kind-config.yaml
var KindConfig []byte

// MultiNodeKindConfig is a three-node cluster's kind config
// (kind-config-multinode.yaml).
//
//go:embed kind-config-multinode.yaml
var MultiNodeKindConfig []byte

package suites

import "github.com/onsi/ginkgo/v2"

// The closed label vocabulary of nodrop's specs; CI and the Makefile
// select with --label-filter on these and nothing else.
var (
	// Cluster: the cluster itself works (Service answers, up/down).
	Cluster = ginkgo.Label("cluster")
	// Rollout: rolling updates under load.
	Rollout = ginkgo.Label("rollout")
	// HotUpgrade: in-place upgrades under load.
	HotUpgrade = ginkgo.Label("hotupgrade")
	// Check: the built nodrop binary on manifests written as a user
	// would write them.
	Check = ginkgo.Label("check")
	// Chaos: disruptions beyond a normal rollout.
	Chaos = ginkgo.Label("chaos")
	// Proxy: rollouts with a proxy in front of the pods (nginx, HAProxy,
	// the Traefik ingress controller), and the proxy reloaded or restarted.
	Proxy = ginkgo.Label("proxy")
	// KnownLossy: a negative control that must lose requests.
	KnownLossy = ginkgo.Label("known-lossy")
	// Lossless: a configuration that must lose none.
	Lossless = ginkgo.Label("lossless")
	// Slow: takes more than a minute.
	Slow = ginkgo.Label("slow")
	// Extended: beyond CI's subset (make e2e-ci leaves it out; make chaos
	// and make e2e run it).
	Extended = ginkgo.Label("extended")
	// Disruptive: creates or deletes clusters, or touches the data plane
	// for everyone; runs serially.
	Disruptive = ginkgo.Label("disruptive")
)

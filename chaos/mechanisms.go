package chaos

// What each fault does to requests: its scenario.Fault's Mechanism, which
// the advice on losses that follow the fault says.
const (
	appDied = "the app died with requests on the wire and refused connections until it listened again. No configuration saves those; what bounds them is the share of the load each pod carries (more replicas) and how fast a pod restarts and turns ready."

	kubeProxyPaused = "kube-proxy, stopped, followed no endpoint change: new connections still went to pods that had stopped serving. A preStop sleep covers only a data plane that lags less than it."

	kubeProxyRestarted = "kube-proxy was down while it restarted and followed no endpoint change meanwhile; the new one writes every rule anew once it has read the Services and EndpointSlices. A preStop sleep covers only a restart shorter than it."

	endpointSlicesPaused = "the EndpointSlices were not updated (kube-controller-manager stopped): a terminating pod stayed listed ready, so kube-proxy, up to date with the slices, sent new connections to it after it stopped serving. A preStop sleep covers only a propagation delay shorter than it."

	packetsDropped = "packets to and from the pod (or the node) were dropped: TCP sends a lost SYN again only after 1 s, so a connection whose handshake is lost twice outlasts a 2 s client timeout. No pod configuration avoids this; a client that retries, or kept-alive connections (no handshake per request), do."

	packetsDelayed = "the packets the pod (or its node) sent were held: a new connection waits once for the answer to its handshake and once for its response, so a delay over half the client's timeout costs every request sent there. No pod configuration avoids this; a client timeout with room for the slowest path, or a retry on another pod, does."

	apiServerPaused = "with the API server stopped, no endpoint change reached kube-proxy: new connections still went to pods that stopped serving meanwhile. A preStop sleep covers only an outage shorter than it."

	nodePaused = "a frozen node's pods stay endpoints until the node is marked NotReady (40 s or more after its last heartbeat): connections sent to them are accepted by nobody or never answered. Only the client (a short timeout and a retry on another pod) or a proxy with outlier detection avoids this."

	nodeDrained = "the drain evicted the node's pods: each goes through its shutdown path (preStop, SIGTERM, drain) as on a deletion; losses here mean that path, or too few pods left serving, did not hold."
)

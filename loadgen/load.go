package loadgen

import "strings"

// A Load is a kind of load: the protocol it speaks and how it uses
// connections. Every caller (the catalogue's rollouts and hot upgrades,
// check, bench, the load command) names and builds its loads in this one
// vocabulary; Config takes what it says.
type Load struct {
	// Name is how tables name it ("keepalive", "long-lived RPC").
	Name string
	// Scheme is its protocol's URL scheme: "http" (the default) or a
	// long-lived protocol's ("rpc").
	Scheme string
	// Fresh opens a new connection for every request; otherwise HTTP
	// connections are kept alive and reused.
	Fresh bool
	// Connections, when > 0, makes it long-lived: this many persistent
	// connections, each sending back to back.
	Connections int
	// InFlight is how many requests each connection of a multiplexed
	// protocol keeps on the wire (0: DefaultInFlight).
	InFlight int
	// Balancer, when set, makes each client resolve the target's name by
	// DNS and balance over its addresses (Config.Balancer): the target is
	// then a name, as clients of a headless Service dial one.
	Balancer string
}

// Apply returns cfg with the load's connection settings.
func (l Load) Apply(cfg Config) Config {
	cfg.DisableKeepAlive = l.Fresh
	cfg.Connections, cfg.InFlight, cfg.Balancer = l.Connections, l.InFlight, l.Balancer
	return cfg
}

// scheme is the load's URL scheme.
func (l Load) scheme() string {
	if l.Scheme == "" {
		return "http"
	}
	return l.Scheme
}

// SpeaksHTTP reports whether its requests are HTTP (they have a path and
// a Host, and an HTTP GET can tell whether the target serves).
func (l Load) SpeaksHTTP() bool {
	p := protocolFor(l.scheme())
	return p == nil || p.hasMethod
}

// Target is the URL of the load's requests to hostport; path is used by
// protocols that have one (HTTP's path, gRPC's method: "/" calls the
// health service).
func (l Load) Target(hostport, path string) string {
	u := l.scheme() + "://" + hostport
	if p := protocolFor(l.scheme()); p == nil || p.hasPath {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		if path != "/" || l.SpeaksHTTP() {
			u += path
		}
	}
	return u
}

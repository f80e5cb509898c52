package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols of long-lived mode, chosen by the target's scheme.
const (
	ProtocolHTTP = "http" // HTTP/1.1 keep-alive, one request at a time per connection
	ProtocolRPC  = "rpc"  // rpcwire, several requests in flight per connection
)

// DefaultInFlight is how many requests a multiplexed connection keeps on
// the wire.
const DefaultInFlight = 4

// A protocol is one wire protocol long-lived load speaks. It is chosen by
// the target URL's scheme from protocols; pacing, the accumulator, the
// delivered-load rule and the report know nothing else of it. Adding a
// protocol is one file with its wireConn and one entry in protocols.
type protocol struct {
	// name is how reports name it (Report.Protocol).
	name string
	// scheme selects it.
	scheme string
	// multiplexed: a connection carries Config.InFlight requests at once;
	// otherwise one at a time.
	multiplexed bool
	// hasMethod: its requests carry Config.Method (reports print it).
	hasMethod bool
	// hasPath: a URL's path says what to call (HTTP: the request's path;
	// gRPC: the method).
	hasPath bool
	// retries: its client library may send a request again by itself;
	// strict load counts such a request lost, Config.Lenient counts it in
	// Report.Retried.
	retries bool
	// open dials target; the connection counts its own reconnects and
	// breaks in stats.
	open func(target string, cfg Config, stats *connStats) (wireConn, error)
	// stream, when the protocol has long-lived server streams, holds one
	// of method open on target until ctx ends (Config.Streams of them run beside
	// the requests), opening it again whenever it ends: a stream cut, or
	// one that could not be opened, is handed to lost as one lost
	// request at that moment; the server's clean ends and the streams
	// held to the end are counted in stats.
	stream func(ctx context.Context, target, method string, cfg Config, id int, stats *connStats, lost func(outcome))
	// defaultStream is the streams' method when Config.StreamMethod is
	// empty.
	defaultStream string
	// http2: connections are HTTP/2, drained by a server with GOAWAY
	// (Client.HTTP2).
	http2 bool
	// reconnectBackoff: how long the client may fail requests at once
	// after a refused dial (Client.ReconnectBackoffMs).
	reconnectBackoff time.Duration
	// balances: its client can resolve a name and spread requests over
	// the addresses (Config.Balancer).
	balances bool
	// appProtocols are the Service appProtocol values that say a port
	// speaks it.
	appProtocols []string
}

// A wireConn is one long-lived connection of a protocol.
type wireConn interface {
	// send sends request o.seq and waits for its answer, at most
	// cfg.Timeout, filling in o: what arrived of the answer (status, pod,
	// version, firstByte), or the real error and its class, and how the
	// connection stood when the request went on it (reused, idle,
	// onConnAt, idleFor). It returns errClosedIdle, having sent nothing,
	// when the server had closed the connection while nothing was on it:
	// the caller opens another and sends there. Multiplexed protocols'
	// send is safe for concurrent use.
	send(o *outcome) error
	// usable reports whether another request may go on the connection.
	usable() bool
	// close closes it; what is still on the wire fails.
	close()
}

// protocols lists every protocol of long-lived mode.
var protocols = []protocol{httpProtocol, rpcProtocol, grpcProtocol, h2cProtocol}

// protocolFor is the protocol of a target URL's scheme, or nil.
func protocolFor(scheme string) *protocol {
	for i := range protocols {
		if protocols[i].scheme == scheme {
			return &protocols[i]
		}
	}
	return nil
}

// streamSchemes lists the schemes of the protocols with server streams.
func streamSchemes() []string {
	var s []string
	for _, p := range protocols {
		if p.stream != nil {
			s = append(s, p.scheme+"://")
		}
	}
	return s
}

// balancingSchemes lists the schemes of the protocols whose client
// balances.
func balancingSchemes() []string {
	var s []string
	for _, p := range protocols {
		if p.balances {
			s = append(s, p.scheme+"://")
		}
	}
	return s
}

// protocolNamed is the protocol a report names, or nil.
func protocolNamed(name string) *protocol {
	for i := range protocols {
		if protocols[i].name == name {
			return &protocols[i]
		}
	}
	return nil
}

// errClosedIdle: the server closed the connection while nothing was on
// it, and nothing was sent.
var errClosedIdle = errors.New("connection closed by the server while idle")

// connStats counts, across a run's connections, the server's polite
// closes (nothing lost, another connection opened) and the breaks with
// requests on the wire; and what became of its streams.
type connStats struct {
	reconnects atomic.Int64
	broken     atomic.Int64

	goAwayMu sync.Mutex
	goAways  []GoAway // as they arrived, at most MaxGoAways

	streamsOpened atomic.Int64 // streams the server accepted
	streamsEnded  atomic.Int64 // of them, ended by the server cleanly (OK)
	streamsHeld   atomic.Int64 // of them, still open when the run ended
}

// MaxGoAways bounds the GOAWAYs a report lists.
const MaxGoAways = 1000

// goAway notes a GOAWAY's arrival.
func (s *connStats) goAway(g GoAway) {
	s.goAwayMu.Lock()
	defer s.goAwayMu.Unlock()
	if len(s.goAways) < MaxGoAways {
		s.goAways = append(s.goAways, g)
	}
}

// goAwayList is the GOAWAYs so far.
func (s *connStats) goAwayList() []GoAway {
	s.goAwayMu.Lock()
	defer s.goAwayMu.Unlock()
	return slices.Clone(s.goAways)
}

// fill puts the counts in r.
func (s *connStats) fill(r *Report) {
	r.GoAways = s.goAwayList()
	r.Reconnects, r.BrokenConnections = int(s.reconnects.Load()), int(s.broken.Load())
	if r.Streams > 0 {
		r.StreamsOpened, r.StreamsEndedByServer, r.StreamsHeld = int(s.streamsOpened.Load()), int(s.streamsEnded.Load()), int(s.streamsHeld.Load())
	}
}

// dialTCP opens a TCP connection to target's host within timeout, set to
// close with RST: the end of a run must not leave a TIME_WAIT per
// connection, nor look to the server like a half-close it must answer.
func dialTCP(target string, timeout time.Duration) (net.Conn, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, timeout)
	if err != nil {
		return nil, err
	}
	c.(*net.TCPConn).SetLinger(0)
	return c, nil
}

// Ask sends one request to target over its long-lived protocol (rpc://,
// grpc://) on a connection of its own, and returns nil when it was
// answered OK: how a caller waits until a target serves before it loads
// it. The request waits at most timeout.
func Ask(target string, timeout time.Duration) error {
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	p := protocolFor(u.Scheme)
	if p == nil {
		return fmt.Errorf("%s: no protocol of long-lived load has scheme %q", target, u.Scheme)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var stats connStats
	c, err := p.open(target, Config{Targets: []string{target}, Timeout: timeout, InFlight: 1}, &stats)
	if err != nil {
		return err
	}
	defer c.close()
	o := outcome{at: time.Now(), target: target}
	if err := c.send(&o); err != nil {
		return err
	}
	switch {
	case o.class == OK:
		return nil
	case o.err != nil:
		return o.err
	}
	return fmt.Errorf("answered %s (status %d)", o.class, o.status)
}

// AppProtocols are the Service port appProtocol values that say a port
// speaks the protocol of scheme (http when scheme names none).
func AppProtocols(scheme string) []string {
	if p := protocolFor(scheme); p != nil {
		return p.appProtocols
	}
	return httpProtocol.appProtocols
}

package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcHealthCheck is the method gRPC load calls when the URL names none:
// the standard health service's Check, which any gRPC server may serve.
const grpcHealthCheck = "/grpc.health.v1.Health/Check"

// grpcReconnectBackoff is how long after a refused dial grpc-go fails
// RPCs at once, with the dial's error, before it dials again: its first
// two backoff steps (1 s, then 1.6 s, each with 20 % jitter).
const grpcReconnectBackoff = 3200 * time.Millisecond

// grpcHealthWatch is the streams' method when none is named: the health
// service's server-streaming Watch, which any server with the health
// service serves.
const grpcHealthWatch = "/grpc.health.v1.Health/Watch"

// grpcProtocol is gRPC over HTTP/2 cleartext: each long-lived connection
// is one client connection (one HTTP/2 connection, pinned to the pod it
// reached, as a real client through a Service is), with Config.InFlight
// RPCs on it at once. It is strict: no retry policy, no waiting for a
// connection to become ready, so an RPC the server refused or cut is
// lost. Like a real client, it dials again by itself after the server
// closes the connection (a GOAWAY, a close); those closes count as
// reconnects, or as broken when RPCs were on the connection. grpc-go
// sends an RPC again by itself, whatever the options, when the server
// refused it unprocessed (a stream above a GOAWAY's last stream, or
// REFUSED_STREAM): strict load counts such an RPC lost as refused, with
// Config.Lenient it is answered and counted in Report.Retried.
//
// grpc://host:port calls the health service's Check (a NOT_SERVING
// answer is lost, as a 503 is); grpc://host:port/pkg.Service/Method calls
// a unary method with an empty request and ignores the answer's content.
var grpcProtocol = protocol{
	name: "grpc", scheme: "grpc", multiplexed: true, retries: true, hasPath: true,
	stream: grpcStream, defaultStream: grpcHealthWatch, balances: true,
	http2: true, reconnectBackoff: grpcReconnectBackoff,
	appProtocols: []string{"grpc", "h2c", "kubernetes.io/h2c"},
	open: func(target string, cfg Config, stats *connStats) (wireConn, error) {
		u, err := url.Parse(target)
		if err != nil {
			return nil, err
		}
		g := &grpcConn{timeout: cfg.Timeout, stats: stats, method: grpcHealthCheck, strict: !cfg.Lenient}
		if u.Path != "" && u.Path != "/" {
			g.method = u.Path
		}
		g.cc, err = grpcClient(u.Host, cfg.Balancer, grpc.WithStatsHandler(g), grpc.WithContextDialer(watchedDialer(g.gotGoAway)))
		if err != nil {
			return nil, err
		}
		g.cc.Connect()
		return g, nil
	},
}

// grpcConn is one gRPC client connection and what nodrop knows of the
// HTTP/2 connections underneath it: one at a time when it is pinned or
// picks the first address, one per address under round_robin. Each RPC
// learns its HTTP/2 connection from the local address its header went
// out on.
type grpcConn struct {
	cc      *grpc.ClientConn
	method  string
	timeout time.Duration
	stats   *connStats
	strict  bool

	mu     sync.Mutex
	closed bool
	live   map[string]*h2conn // the open HTTP/2 connections, by local address
	all    []*h2conn          // every one this client had
}

// h2conn is one HTTP/2 connection of a client: RPCs on the wire, RPCs
// sent on it, and how it ended.
type h2conn struct {
	id       int    // its number among the client's connections, from 1
	local    string // its local address, its key in grpcConn.live
	pod      string // the pod that answered last on it
	inFlight int
	sent     int
	lastEnd  time.Time // the last RPC's end, or the connection's start
	ended    bool      // the server (not nodrop's close) ended it
	cut      bool      // an RPC was cut on it
}

func (g *grpcConn) usable() bool { return true }

// close ends the client at the end of the run and counts its connections
// the server ended: broken where an RPC was cut on one, a reconnect
// otherwise. Counted here, once every RPC has ended, because an RPC's end
// and its connection's end reach nodrop in either order.
func (g *grpcConn) close() {
	g.mu.Lock()
	g.closed = true
	for _, c := range g.all {
		switch {
		case c.cut:
			g.stats.broken.Add(1)
		case c.ended:
			g.stats.reconnects.Add(1)
		}
	}
	g.mu.Unlock()
	g.cc.Close()
}

// send calls the method once, within the run's timeout.
func (g *grpcConn) send(o *outcome) error {
	note := new(rpcNote)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), rpcNoteKey{}, note), g.timeout)
	defer cancel()
	var header, trailer metadata.MD
	var err error
	if g.method == grpcHealthCheck {
		var resp *healthpb.HealthCheckResponse
		resp, err = healthpb.NewHealthClient(g.cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
		if err == nil && resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			err = errNotServing{resp.GetStatus()}
		}
	} else {
		err = g.cc.Invoke(ctx, g.method, &emptypb.Empty{}, &emptypb.Empty{}, grpc.Header(&header), grpc.Trailer(&trailer))
	}
	// A status the server itself returned comes in its trailer: a
	// server that names itself there answered, whatever the code; an
	// RPC cut by the transport has no trailer.
	answered := namesPod(trailer)
	named(o, metadata.Join(header, trailer))
	now := time.Now()
	o.latency = now.Sub(o.at)
	g.mu.Lock()
	c := note.on
	if c != nil {
		// How the connection stood when the RPC went on it.
		o.reused, o.idle, o.idleFor, o.onConnAt, o.h2conn = note.reused, note.idle, note.idleFor, note.onConnAt, c.id
		c.inFlight--
		c.lastEnd = now
		if o.pod != "" {
			c.pod = o.pod
		}
	}
	g.mu.Unlock()
	if note.retried.Load() {
		o.retried, o.retryCount = true, !g.strict
		if err == nil && g.strict {
			err, o.goAwayRace = errTransparentRetry, true
		}
	}
	if err != nil {
		o.err, o.failedAt = err, now
		o.class, o.firstByte = grpcClass(err, answered)
		o.status = int(status.Code(err))
		if !o.firstByte && (o.class == EOF || o.class == Reset) && c != nil {
			g.mu.Lock()
			c.cut = true
			g.mu.Unlock()
		}
		return nil
	}
	o.firstByte = true
	return nil
}

// grpcClass is the class of a failed RPC, and whether the server
// answered it: the transport's failures (UNAVAILABLE, DEADLINE_EXCEEDED,
// CANCELLED, and an RST_STREAM) by the reason the transport gives, the
// server's own statuses as its errors (a wrong method as http_other, the
// rest as http_5xx). answered says the server named itself in the
// answer's metadata: then every status is the server's own, even an
// UNAVAILABLE.
func grpcClass(err error, answered bool) (Class, bool) {
	if _, ok := err.(errNotServing); ok {
		return HTTP5xx, true
	}
	if err == errTransparentRetry {
		return Refused, false
	}
	st := status.Convert(err)
	if answered {
		// The server named itself (its pod metadata came back): the
		// status is its answer, whatever its code.
		if st.Code() == codes.Unimplemented || st.Code() == codes.NotFound || st.Code() == codes.InvalidArgument {
			return HTTPOther, true
		}
		return HTTP5xx, true
	}
	msg := st.Message()
	switch st.Code() {
	case codes.DeadlineExceeded:
		return Timeout, false
	case codes.Unavailable, codes.Canceled:
		switch c := classifyMessage(msg); {
		case c != Other:
			return c, false
		case closedUnder(msg):
			return EOF, false
		}
		return Other, false
	case codes.Internal:
		if strings.Contains(msg, "RST_STREAM") {
			return Reset, false
		}
		return HTTP5xx, true
	case codes.Unimplemented, codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
		return HTTPOther, true
	}
	return HTTP5xx, true
}

// rpcNote is what the stats handler learns of one RPC: whether grpc-go
// began a transparent retry of it, and the HTTP/2 connection its last
// attempt went on (nil: none took it) and how that connection stood
// then. Guarded by its grpcConn's mu, but for retried.
type rpcNote struct {
	retried  atomic.Bool
	on       *h2conn
	reused   bool
	idle     bool
	idleFor  time.Duration
	onConnAt time.Time
}

type rpcNoteKey struct{}

type h2connKey struct{}

// errTransparentRetry: in strict load, an RPC grpc-go sent a second time.
var errTransparentRetry = errors.New("the server refused the RPC unprocessed (GOAWAY or REFUSED_STREAM) and grpc-go sent it again on another connection")

// closedUnder reports whether a gRPC transport error says the
// connection was closed under the RPC: EOF from the server, a GOAWAY, a
// transport closing ("closing transport due to: … EOF, received prior
// goaway").
func closedUnder(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"eof", "goaway", "transport is closing", "closing transport", "connection closed"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// watchedDialer dials HTTP/2 connections that call got with the
// connection as the server's first GOAWAY on it arrives.
func watchedDialer(got func(net.Conn)) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &goAwayWatch{Conn: c, got: func() { got(c) }}, nil
	}
}

// gotGoAway notes the GOAWAY on one of the client's HTTP/2 connections,
// with the pod that answered there last.
func (g *grpcConn) gotGoAway(c net.Conn) {
	g.mu.Lock()
	pod := ""
	if h := g.live[c.LocalAddr().String()]; h != nil {
		pod = h.pod
	}
	closed := g.closed
	g.mu.Unlock()
	if !closed {
		g.stats.goAway(GoAway{At: time.Now(), Pod: pod})
	}
}

// goAwayWatch is a client's HTTP/2 connection that calls got as the
// first GOAWAY frame's header arrives from the server (a graceful server
// sends two, a ping apart: the first is when the client was told). It
// reads frame headers only (nine bytes, the length and type), from the
// first byte: a server's connection preface is its first frame.
type goAwayWatch struct {
	net.Conn
	got  func()
	seen bool
	hdr  [9]byte
	have int // bytes of hdr read
	skip int // payload bytes of the current frame still to come
}

func (w *goAwayWatch) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	w.scan(p[:n])
	return n, err
}

// http2GoAway is the GOAWAY frame's type.
const http2GoAway = 0x7

func (w *goAwayWatch) scan(b []byte) {
	for len(b) > 0 {
		if w.skip > 0 {
			k := min(w.skip, len(b))
			w.skip, b = w.skip-k, b[k:]
			continue
		}
		k := copy(w.hdr[w.have:], b)
		w.have, b = w.have+k, b[k:]
		if w.have < len(w.hdr) {
			return
		}
		w.have = 0
		w.skip = int(w.hdr[0])<<16 | int(w.hdr[1])<<8 | int(w.hdr[2])
		if w.hdr[3] == http2GoAway && !w.seen {
			w.seen = true
			w.got()
		}
	}
}

// TagRPC is stats.Handler's; nodrop needs no RPC tag.
func (g *grpcConn) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// TagConn notes a new HTTP/2 connection of the client.
func (g *grpcConn) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	c := &h2conn{lastEnd: time.Now()}
	g.mu.Lock()
	defer g.mu.Unlock()
	c.id = len(g.all) + 1
	if g.live == nil {
		g.live = map[string]*h2conn{}
	}
	if info.LocalAddr != nil {
		c.local = info.LocalAddr.String()
		g.live[c.local] = c
	}
	g.all = append(g.all, c)
	return context.WithValue(ctx, h2connKey{}, c)
}

// HandleRPC notes a transparent retry on the RPC's note, and the HTTP/2
// connection each attempt's header went out on.
func (g *grpcConn) HandleRPC(ctx context.Context, s stats.RPCStats) {
	n, ok := ctx.Value(rpcNoteKey{}).(*rpcNote)
	if !ok {
		return
	}
	switch s := s.(type) {
	case *stats.Begin:
		if s.IsTransparentRetryAttempt {
			n.retried.Store(true)
		}
	case *stats.OutHeader:
		if !s.Client || s.LocalAddr == nil {
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		c := g.live[s.LocalAddr.String()]
		if c == nil {
			return
		}
		if n.on != nil {
			// An earlier attempt's connection: that attempt is over.
			n.on.inFlight--
		}
		now := time.Now()
		n.on, n.reused, n.idle, n.idleFor, n.onConnAt = c, c.sent > 0, c.inFlight == 0, now.Sub(c.lastEnd), now
		c.sent++
		c.inFlight++
	}
}

// HandleConn notes an HTTP/2 connection's end (nodrop's own close at the
// end of the run aside): its client's next RPCs go on another.
func (g *grpcConn) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnEnd); !ok {
		return
	}
	c, ok := ctx.Value(h2connKey{}).(*h2conn)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		c.ended = true
	}
	if g.live[c.local] == c {
		delete(g.live, c.local)
	}
}

// errNotServing is a health check answered NOT_SERVING (or UNKNOWN): lost,
// as an HTTP 503 is.
type errNotServing struct {
	status healthpb.HealthCheckResponse_ServingStatus
}

func (e errNotServing) Error() string { return "health check answered " + e.status.String() }

// grpcStream holds one server stream open on a client connection of its
// own until ctx ends, as a watching client does: the request is empty,
// the messages are read and not looked at. A stream the server ends
// cleanly is opened again at once; a cut one (or one that could not be
// opened) is lost and opened again after streamRetry, so a server that
// is gone is not called in a loop.
func grpcStream(ctx context.Context, target, method string, cfg Config, id int, stats *connStats, lost func(outcome)) {
	u, err := url.Parse(target)
	if err != nil {
		return
	}
	pods := &streamPods{}
	cc, err := grpcClient(u.Host, cfg.Balancer, grpc.WithContextDialer(watchedDialer(func(c net.Conn) {
		if ctx.Err() == nil {
			stats.goAway(GoAway{At: time.Now(), Pod: pods.of(c.LocalAddr())})
		}
	})))
	if err != nil {
		lost(outcome{at: time.Now(), target: target, conn: id, err: err, class: Other})
		return
	}
	defer cc.Close()
	for ctx.Err() == nil {
		o := outcome{at: time.Now(), target: "grpc://" + u.Host + method, conn: id}
		opened, answered, err := watchOnce(ctx, cc, method, &o, pods)
		if opened {
			stats.streamsOpened.Add(1)
		}
		switch {
		case ctx.Err() != nil && opened:
			stats.streamsHeld.Add(1)
			return
		case ctx.Err() != nil:
			return
		case err == nil:
			stats.streamsEnded.Add(1)
			continue
		}
		// Placed at the moment it failed, where the timeline needs it.
		o.at, o.failedAt, o.err = time.Now(), time.Now(), err
		o.class, _ = grpcClass(err, answered)
		o.status = int(status.Code(err))
		lost(o)
		select {
		case <-ctx.Done():
		case <-time.After(streamRetry):
		}
	}
}

// streamPods names the pod that answered last on each of a stream
// client's HTTP/2 connections, by its local address: whose GOAWAY it is
// when one arrives there.
type streamPods struct {
	mu sync.Mutex
	by map[string]string
}

func (p *streamPods) of(local net.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.by[local.String()]
}

// answered notes the pod a stream's header named, on the connection the
// stream went on (ctx is the stream's).
func (p *streamPods) answered(ctx context.Context, pod string) {
	on, ok := peer.FromContext(ctx)
	if !ok || on.LocalAddr == nil || pod == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.by == nil {
		p.by = map[string]string{}
	}
	p.by[on.LocalAddr.String()] = pod
}

// streamRetry is how long a stream that failed waits before it is opened
// again.
const streamRetry = 100 * time.Millisecond

// watchOnce opens one stream and reads it until it ends: nil when the
// server ended it with OK, otherwise the error it ended with. opened says
// whether the server accepted it (a message came), answered whether
// the error is the server's own status (its trailer named the pod). o
// gets the pod and version the answer named.
func watchOnce(ctx context.Context, cc *grpc.ClientConn, method string, o *outcome, pods *streamPods) (opened, answered bool, err error) {
	// The run's end cancels the stream from this side. Its deadline is
	// not sent along: the server would end the stream at it, racing the
	// client's own end, and the stream would look cut.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	s, err := cc.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return false, false, err
	}
	ended := func(err error) (bool, bool, error) {
		trailer := s.Trailer()
		named(o, trailer)
		if errors.Is(err, io.EOF) {
			return opened, true, nil
		}
		return opened, namesPod(trailer), err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return ended(err)
	}
	if err := s.CloseSend(); err != nil {
		return ended(err)
	}
	header, err := s.Header()
	if err != nil {
		return ended(err)
	}
	named(o, header)
	pods.answered(s.Context(), o.pod)
	o.reused, o.firstByte = true, true
	// Opened once the server sent on it: a status alone (app starting)
	// refused it.
	for {
		if err := s.RecvMsg(new(emptypb.Empty)); err != nil {
			return ended(err)
		}
		opened = true
	}
}

// grpcClient is a client connection to host as strict load wants it:
// cleartext, no retry policy and no service config from the server;
// pinned to the address (no resolver) when balancer is empty, otherwise
// resolving host by DNS and balancing by that policy.
func grpcClient(host, balancer string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	target := "passthrough:///" + host
	if balancer != "" {
		target = "dns:///" + host
		opts = append(opts, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"`+balancer+`":{}}]}`))
	}
	return grpc.NewClient(target, append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDisableRetry(),
		grpc.WithDisableServiceConfig(),
	}, opts...)...)
}

// namesPod reports whether md names the pod that answered: in a trailer,
// the sign that the status is the server's own.
func namesPod(md metadata.MD) bool { return len(md.Get(strings.ToLower(PodHeader))) > 0 }

// named notes the pod and version md names, unless o has them.
func named(o *outcome, md metadata.MD) {
	if v := md.Get(strings.ToLower(PodHeader)); len(v) > 0 && o.pod == "" {
		o.pod = v[0]
	}
	if v := md.Get(strings.ToLower(VersionHeader)); len(v) > 0 && o.version == "" {
		o.version = v[0]
	}
}

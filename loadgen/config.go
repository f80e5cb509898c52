package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultRate    = 1000
	DefaultTimeout = 2 * time.Second
	// DefaultIdleTimeout is how long a kept-alive connection may sit idle
	// in the client's pool before the client closes it.
	DefaultIdleTimeout = time.Second
	// MaxDuration bounds every run, also one that is meant to last until
	// its context is cancelled.
	MaxDuration = 2 * time.Hour
)

// Config describes one constant-rate load run. The zero value of each
// field means its default; Normalize fills them in. Its JSON (all but
// the hooks) opens an outcome stream (Emit).
type Config struct {
	// Targets are the URLs requests go to, in turn.
	Targets []string
	// Rate is requests per second across all targets.
	Rate int
	// Duration is how long to send; 0 means until the context is
	// cancelled (and at most MaxDuration).
	Duration time.Duration
	// Timeout bounds each request from dial to the last body byte.
	Timeout time.Duration
	// DisableKeepAlive opens a fresh connection for every request, which
	// tests endpoint propagation; the default reuses connections, which
	// tests draining.
	DisableKeepAlive bool
	// IdleTimeout closes kept-alive connections idle this long. A server
	// that drains (Connection: close for a drain period, then closing
	// what is still idle) can only avoid the idle-close race with clients
	// that drop idle connections sooner than it drains, the same rule as
	// "client idle timeout below server keep-alive timeout". The default,
	// 1 s, is such a client; a longer one reproduces clients that are not.
	IdleTimeout time.Duration
	// MaxWorkers bounds concurrent requests. Default: enough to keep the
	// rate through a stall as long as Timeout (rate × timeout + 10), so
	// load stays open-loop exactly when it matters.
	MaxWorkers uint64
	// MaxConns bounds connections per target host. Default: MaxWorkers.
	MaxConns int
	Method   string
	Body     []byte
	Header   http.Header
	// Lenient lets net/http retry a request that failed on a reused
	// connection, as most Go clients do, and lets grpc-go retry an RPC
	// the server refused unprocessed (its transparent retry); such
	// requests then count as OK and Report.Retried says how many there
	// were. Strict (the default) counts them as lost.
	Lenient bool
	// Connections, when > 0, switches to long-lived mode: this many
	// persistent connections, each sending its next request as soon as
	// the previous one is answered (and its share of Rate allows), for the
	// whole run. Nothing reconnects silently: a connection that breaks
	// loses what it had on the wire. Targets may then also be rpc://host:port
	// (package rpcwire).
	Connections int
	// InFlight is how many requests each RPC connection keeps on the wire
	// (long-lived mode, rpc:// targets). Default DefaultInFlight.
	InFlight int
	// Streams, in long-lived mode over a protocol with server streams
	// (grpc://), holds this many long-lived server streams open beside
	// the requests, each on a connection of its own, opened again
	// whenever it ends. A stream cut (or one that could not be opened)
	// is one lost request at that moment; the server's clean ends are
	// counted in the report.
	Streams int
	// StreamMethod is the streams' server-streaming method. Default: the
	// standard health service's Watch.
	StreamMethod string
	// Balancer, over a protocol whose client balances (grpc://), makes
	// each client resolve the URL's host by DNS (dns:///) and spread its
	// requests by this policy: "pick_first" (one address at a time) or
	// "round_robin" (a connection to every address, requests in turn),
	// as clients of a headless Service do. Empty: each client is pinned
	// to the URL's address, as through a Service's virtual IP.
	Balancer string
	// Progress, when set, is called about four times a second.
	Progress func(Progress) `json:"-"`
	// Witness, when set, watches the machine from a process of its own,
	// so each stall of the generator says whether it was the generator's
	// own or the whole machine's (Stall.Whose).
	Witness Witness `json:"-"`
	// OnStall, when set, is called from the stall watch as each stall
	// ends (e.g. to keep the execution trace around it); it must not
	// block.
	OnStall func(Stall) `json:"-"`
}

// Progress is a snapshot of a running load.
type Progress struct {
	Elapsed time.Duration
	Sent    int
	Lost    int
}

// ErrInvalidConfig marks every error returned by Normalize.
var ErrInvalidConfig = errors.New("invalid load configuration")

// invalid is an ErrInvalidConfig saying what is wrong.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Normalize validates cfg and returns a copy with defaults filled in.
func (cfg Config) Normalize() (Config, error) {
	bad := func(format string, args ...any) (Config, error) { return Config{}, invalid(format, args...) }
	if len(cfg.Targets) == 0 {
		return bad("no target URL")
	}
	if err := cfg.checkTargets(); err != nil {
		return Config{}, err
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Rate < 0 {
		return bad("rate must be > 0, got %d", cfg.Rate)
	}
	if cfg.Duration < 0 {
		return bad("duration must not be negative, got %s", cfg.Duration)
	}
	if cfg.Duration > MaxDuration {
		return bad("duration must be at most %s, got %s", MaxDuration, cfg.Duration)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return bad("timeout must be > 0, got %s", cfg.Timeout)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.IdleTimeout < 0 {
		return bad("idle timeout must be > 0, got %s", cfg.IdleTimeout)
	}
	if cfg.MaxWorkers == 0 {
		cfg.MaxWorkers = uint64(math.Ceil(float64(cfg.Rate)*cfg.Timeout.Seconds())) + 10
	}
	if cfg.MaxConns < 0 {
		return bad("max connections must not be negative, got %d", cfg.MaxConns)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = int(min(cfg.MaxWorkers, math.MaxInt32))
	}
	if cfg.Connections < 0 {
		return bad("connections must not be negative, got %d", cfg.Connections)
	}
	if err := cfg.checkLongLived(); err != nil {
		return Config{}, err
	}
	if err := cfg.checkStreams(); err != nil {
		return Config{}, err
	}
	if err := cfg.checkBalancer(); err != nil {
		return Config{}, err
	}
	if cfg.InFlight < 0 {
		return bad("in-flight must not be negative, got %d", cfg.InFlight)
	}
	if cfg.InFlight == 0 {
		cfg.InFlight = DefaultInFlight
	}
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
	}
	if !isToken(cfg.Method) {
		return bad("method %q is not an HTTP method (a token: letters, digits, no spaces)", cfg.Method)
	}
	return cfg, nil
}

// checkTargets validates the target URLs: each parses, has a host and a
// valid port, and its scheme is one the load's mode speaks (paced load:
// http, https; long-lived load: a protocol of the table).
func (cfg Config) checkTargets() error {
	bad := invalid
	for _, t := range cfg.Targets {
		u, err := url.Parse(t)
		if err != nil {
			return bad("target %q: %v", t, err)
		}
		paced, p := u.Scheme == "http" || u.Scheme == "https", protocolFor(u.Scheme)
		switch {
		case !paced && p == nil:
			return bad("target %q: scheme must be %s", t, orList(append([]string{"http", "https"}, slices.DeleteFunc(longLivedSchemes(), func(s string) bool { return s == "http" })...)))
		case cfg.Connections == 0 && !paced:
			return bad("target %q: %s targets need long-lived mode (connections > 0)", t, u.Scheme)
		case cfg.Connections > 0 && p == nil:
			return bad("target %q: long-lived mode speaks %s", t, orList(longLivedSchemes()))
		}
		if u.Host == "" {
			return bad("target %q: no host", t)
		}
		if p := u.Port(); p != "" {
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return bad("target %q: port %s is not in 1-65535", t, p)
			}
		}
	}
	return nil
}

// checkLongLived validates long-lived mode: strict, no more connections
// than requests per second, one protocol.
func (cfg Config) checkLongLived() error {
	bad := invalid
	if cfg.Connections == 0 {
		return nil
	}
	if cfg.Connections > cfg.Rate {
		return bad("%d connections at %d requests/s would leave some idle: use at most one connection per request per second", cfg.Connections, cfg.Rate)
	}
	scheme := ""
	for _, t := range cfg.Targets {
		u, _ := url.Parse(t)
		if scheme != "" && u.Scheme != scheme {
			return bad("long-lived mode needs one protocol, got %s and %s targets", scheme, u.Scheme)
		}
		scheme = u.Scheme
	}
	if p := protocolFor(scheme); cfg.Lenient && (p == nil || !p.retries) {
		return bad("long-lived %s load is always strict: a request on a broken connection is lost", scheme)
	}
	return nil
}

// streamMethod is the streams' method, or "" without streams.
func (cfg Config) streamMethod() string {
	switch {
	case cfg.Streams == 0:
		return ""
	case cfg.StreamMethod != "":
		return cfg.StreamMethod
	}
	return cfg.protocol().defaultStream
}

// Balancers are the policies Config.Balancer may name.
var Balancers = []string{"pick_first", "round_robin"}

// checkBalancer validates Config.Balancer: a policy of Balancers, for
// long-lived load over a protocol whose client balances.
func (cfg Config) checkBalancer() error {
	if cfg.Balancer == "" {
		return nil
	}
	if !slices.Contains(Balancers, cfg.Balancer) {
		return invalid("balancer %q: want %s", cfg.Balancer, orList(Balancers))
	}
	if p := cfg.protocol(); cfg.Connections == 0 || p == nil || !p.balances {
		return invalid("a balancer is for long-lived load whose client resolves and balances: %s", orList(balancingSchemes()))
	}
	return nil
}

// MaxStreams bounds Config.Streams.
const MaxStreams = 100

// checkStreams validates Config.Streams: long-lived load over a protocol
// with server streams.
func (cfg Config) checkStreams() error {
	switch {
	case cfg.Streams == 0 && cfg.StreamMethod == "":
		return nil
	case cfg.Streams < 0 || cfg.Streams > MaxStreams:
		return invalid("streams must be 0–%d, got %d", MaxStreams, cfg.Streams)
	case cfg.Streams == 0:
		return invalid("a stream method without streams: set the number of streams")
	case cfg.Connections == 0 || cfg.protocol().stream == nil:
		return invalid("streams need long-lived load over a protocol with server streams (%s)", strings.Join(streamSchemes(), ", "))
	case cfg.StreamMethod != "" && !strings.HasPrefix(cfg.StreamMethod, "/"):
		return invalid("stream method %q must be /package.Service/Method", cfg.StreamMethod)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 5.6.2), which a
// method must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// client is the behaviour of nodrop's client under a normalized config.
func (cfg Config) client() Client {
	c := Client{
		TimeoutMs: ms(cfg.Timeout), KeepAlive: !cfg.DisableKeepAlive, Strict: !cfg.Lenient,
		MaxWorkers: cfg.MaxWorkers, MaxConns: cfg.MaxConns,
	}
	if cfg.Connections > 0 {
		c.KeepAlive, c.MaxWorkers, c.MaxConns = true, 0, 0
		c.Connections, c.CheckBeforeReuse = cfg.Connections, true
		p := cfg.protocol()
		c.Protocol, c.HTTP2, c.ReconnectBackoffMs = p.name, p.http2, ms(p.reconnectBackoff)
		c.Balancer = cfg.Balancer
		if p.multiplexed {
			c.InFlight = cfg.InFlight
		}
		return c
	}
	if c.KeepAlive {
		c.IdleTimeoutMs, c.OldestFirst = ms(cfg.IdleTimeout), true
	} else {
		c.CloseWithRST = true
	}
	return c
}

// protocol is the long-lived protocol of a normalized config.
func (cfg Config) protocol() *protocol {
	if u, err := url.Parse(cfg.Targets[0]); err == nil {
		if p := protocolFor(u.Scheme); p != nil {
			return p
		}
	}
	return &httpProtocol
}

// longLivedSchemes lists the schemes long-lived mode speaks.
func longLivedSchemes() []string {
	var s []string
	for _, p := range protocols {
		s = append(s, p.scheme)
	}
	return s
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// Split divides cfg's load into n shares that add up to it, one for each
// of n generators: the rate (the first shares one request a second more
// where it does not divide), and in long-lived mode the connections and
// streams (each share at least one connection).
func Split(cfg Config, n int) []Config {
	n = max(1, n)
	shares := make([]Config, n)
	part := func(total, i int) int {
		p := total / n
		if i < total%n {
			p++
		}
		return p
	}
	for i := range shares {
		s := cfg
		s.Rate = part(cfg.Rate, i)
		if cfg.Connections > 0 {
			s.Connections = max(1, part(cfg.Connections, i))
			s.Streams = part(cfg.Streams, i)
		}
		shares[i] = s
	}
	return shares
}

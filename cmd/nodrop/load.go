package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nodrop-dev/nodrop/internal/progress"
	"github.com/nodrop-dev/nodrop/internal/sched"
	"github.com/nodrop-dev/nodrop/loadgen"
)

// loadOptions are the load command's flags.
type loadOptions struct {
	cfg       loadgen.Config
	keepAlive bool
	headers   []string
	body      string
	asJSON    bool
	http2     bool
	emit      bool
	merge     []string
}

func newLoadCommand() *cobra.Command {
	var o loadOptions
	cfg := &o.cfg
	cmd := &cobra.Command{
		Use:   "load --url URL [flags]",
		Short: "Send constant-rate load and report every lost request",
		Long: `Send constant-rate, open-loop HTTP load and report every lost request:
HTTP 5xx or other unexpected status, connection refused, reset, EOF or timeout.

Strict by default: a request the server dropped is lost even where Go's
net/http would silently re-send it.

Long-lived mode (--connections N): N persistent connections send requests
back to back for the whole run, over HTTP/1.1 (http:// URLs), HTTP/2
without TLS (--http2, or h2c:// URLs), nodrop's multiplexed RPC protocol
(rpc://host:port) or gRPC over HTTP/2
(grpc://host:port calls the standard health service's Check;
grpc://host:port/pkg.Service/Method a unary method with an empty request),
--in-flight requests per multiplexed connection. A connection that breaks
loses what it had on the wire and is reported; nothing is retried. This is
the load for hot upgrades. With gRPC, --streams K also holds K server
streams open (--stream-method, default the health service's Watch), each
on a connection of its own and opened again when the server ends it
cleanly; a stream cut is a lost request at that moment. grpc-go re-sends
an RPC the server refused unprocessed, whatever its options: strict load
counts it lost, --lenient counts it answered and retried. --balancer
round_robin (or pick_first) makes each gRPC client resolve the URL's host
by DNS and balance over every address, as clients of a headless Service
do; without it each is pinned to the address, as through a ClusterIP.

Several generators, one verdict: --emit writes each request's outcome as
it is judged (one JSON line each, then the generator's own record) instead
of a report, for another nodrop to merge; --merge FILE (repeatable, - for
stdin) merges such streams into one report, each loss naming the
generator (file) that sent it. A stream cut before its end, or a
generator that sent less than its rate, makes the merged run not judged.

A run is judged only if its load was delivered: at least 99% of the target
rate over the run, and no 100 ms window below half its share. Timeouts that
came while nodrop's own process stood still are not the server's.

Exit status: 0 lossless, 1 some requests lost, 2 bad input, 3 not judged
(load not delivered, interrupted, or the generator too late to judge).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLoad(cmd, o) },
	}
	f := cmd.Flags()
	f.StringArrayVar(&cfg.Targets, "url", nil, "target URL; repeat for several targets, used in turn")
	f.IntVar(&cfg.Rate, "rate", loadgen.DefaultRate, "requests per second across all targets")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send load; 0 sends until interrupted (at most "+loadgen.MaxDuration.String()+")")
	f.DurationVar(&cfg.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout, from dial to the last body byte")
	f.BoolVar(&o.keepAlive, "keepalive", true, "reuse connections; --keepalive=false opens a fresh connection per request")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", loadgen.DefaultIdleTimeout, "close kept-alive connections idle this long (longer than a server's drain period reproduces the idle-close race)")
	f.StringVar(&cfg.Method, "method", http.MethodGet, "HTTP method")
	f.StringVar(&o.body, "body", "", "request body")
	f.StringArrayVarP(&o.headers, "header", "H", nil, `request header "Name: value"; repeatable`)
	f.BoolVar(&cfg.Lenient, "lenient", false, "let net/http retry requests that failed on a reused connection, as most Go clients do (gRPC: grpc-go's transparent retry), and report how many were retried")
	f.Uint64Var(&cfg.MaxWorkers, "max-workers", 0, "bound on concurrent requests (default: rate × timeout + 10)")
	f.IntVar(&cfg.MaxConns, "max-conns", 0, "bound on connections per host (default: max-workers)")
	f.IntVar(&cfg.Connections, "connections", 0, "long-lived mode: this many persistent connections sending back to back (needed for rpc://, grpc:// and h2c:// URLs and --http2)")
	f.IntVar(&cfg.InFlight, "in-flight", loadgen.DefaultInFlight, "long-lived rpc, grpc and HTTP/2: requests each connection keeps on the wire")
	f.IntVar(&cfg.Streams, "streams", 0, "long-lived grpc: also hold this many server streams open, each judged on how it ended")
	f.StringVar(&cfg.Balancer, "balancer", "", "long-lived grpc: each client resolves the URL's host by DNS (dns:///) and balances over its addresses by this policy, pick_first or round_robin, as clients of a headless Service do (default: pinned to the address)")
	f.StringVar(&cfg.StreamMethod, "stream-method", "", "the streams' server-streaming method, /pkg.Service/Method (default /grpc.health.v1.Health/Watch)")
	f.BoolVar(&o.http2, "http2", false, "long-lived HTTP/2 without TLS (h2c, prior knowledge): http:// URLs are sent as h2c://, --in-flight requests per connection")
	f.BoolVar(&o.asJSON, "json", false, "print the report as one JSON object")
	f.BoolVar(&o.emit, "emit", false, "write every request's outcome to stdout as it is judged (the outcome stream --merge reads), not a report")
	f.StringArrayVar(&o.merge, "merge", nil, "merge the outcome streams of generators run with --emit (a file, - for stdin; repeatable) into one report; no load is sent")
	return cmd
}

// config is the load the flags ask for, refused as bad input before
// anything starts.
func (o loadOptions) config(cmd *cobra.Command) (loadgen.Config, error) {
	cfg := o.cfg
	if len(cfg.Targets) == 0 {
		return cfg, usagef("--url is required")
	}
	cfg.DisableKeepAlive = !o.keepAlive
	if o.http2 {
		if cfg.Connections == 0 {
			return cfg, usagef("--http2 is long-lived load: set --connections N")
		}
		cfg.Targets = slices.Clone(cfg.Targets)
		for i, t := range cfg.Targets {
			rest, ok := strings.CutPrefix(t, "http://")
			if !ok && !strings.HasPrefix(t, "h2c://") {
				return cfg, usagef("--http2 needs http:// URLs, got %s", t)
			}
			if ok {
				cfg.Targets[i] = "h2c://" + rest
			}
		}
	}
	cfg.Body = []byte(o.body)
	h, err := parseHeaders(o.headers)
	if err != nil {
		return cfg, err
	}
	cfg.Header = h
	if cmd.Flags().Changed("rate") && cfg.Rate <= 0 {
		return cfg, usagef("--rate must be > 0, got %d", cfg.Rate)
	}
	if cmd.Flags().Changed("timeout") && cfg.Timeout <= 0 {
		return cfg, usagef("--timeout must be > 0, got %s", cfg.Timeout)
	}
	if _, err := cfg.Normalize(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// runLoad sends the load, with live progress on a terminal and the
// generator's stall watch, prints the report, and exits by its verdict.
func runLoad(cmd *cobra.Command, o loadOptions) error {
	if len(o.merge) > 0 {
		return runMerge(cmd, o)
	}
	cfg, err := o.config(cmd)
	if err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	live := isTerminal(stderr) && !o.emit
	if live {
		cfg.Progress = liveProgress(stderr)
	}
	sched.OneP()
	stalls := startStallWatch(cmd.Context(), "", progress.New(stderr, false))
	defer stalls.Stop()
	cfg.Witness = stalls.Witness()
	defer sched.DuringLoad()()
	if o.emit {
		if err := loadgen.Emit(cmd.Context(), cfg, cmd.OutOrStdout()); err != nil {
			return exitError{code: exitNotJudged, msg: err.Error()}
		}
		return nil
	}
	r, err := loadgen.Run(cmd.Context(), cfg)
	if live {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if errors.Is(err, loadgen.ErrInvalidConfig) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	return writeLoadReport(cmd, o, r)
}

// liveProgress writes a run's progress on one line of a terminal.
func liveProgress(w io.Writer) func(loadgen.Progress) {
	return func(p loadgen.Progress) {
		fmt.Fprintf(w, "\r%6.1fs  sent %-8d lost %-8d", p.Elapsed.Seconds(), p.Sent, p.Lost)
	}
}

// runMerge merges the outcome streams --merge names into one report and
// exits by its verdict. Every file is opened before anything is read: a
// missing one is bad input.
func runMerge(cmd *cobra.Command, o loadOptions) error {
	if len(o.cfg.Targets) > 0 || o.emit {
		return usagef("--merge reads the streams of generators that sent the load: no --url, no --emit")
	}
	var sources []loadgen.Source
	for _, name := range o.merge {
		if name == "-" {
			sources = append(sources, loadgen.Source{Name: "stdin", R: cmd.InOrStdin()})
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			return usageError{fmt.Errorf("--merge: %w", err)}
		}
		defer f.Close()
		sources = append(sources, loadgen.Source{Name: name, R: f})
	}
	var live func(loadgen.Progress)
	if stderr := cmd.ErrOrStderr(); isTerminal(stderr) {
		live = liveProgress(stderr)
		defer fmt.Fprint(stderr, "\r\033[K")
	}
	r, err := loadgen.Merge(cmd.Context(), sources, live)
	if err != nil {
		return usageError{err}
	}
	return writeLoadReport(cmd, o, r)
}

// writeLoadReport prints r (a table, or JSON) and exits by its verdict.
func writeLoadReport(cmd *cobra.Command, o loadOptions, r *loadgen.Report) error {
	out := cmd.OutOrStdout()
	if o.asJSON {
		if err := json.NewEncoder(out).Encode(r); err != nil {
			return err
		}
	} else if err := r.WriteTable(out); err != nil {
		return err
	}
	switch r.Verdict {
	case loadgen.Lossless:
		return nil
	case loadgen.Lossy:
		return exitError{code: exitLost}
	}
	return exitError{code: exitNotJudged, msg: "not judged: " + strings.Join(r.NotJudged, "; ")}
}

func parseHeaders(lines []string) (http.Header, error) {
	h := http.Header{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usagef("--header %q: want \"Name: value\"", l)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

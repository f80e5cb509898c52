// Command lb runs a reloading proxy (HAProxy or nginx, from Debian's
// packages) in front of a Service's pods, as many clusters do outside
// an ingress controller: it watches the Service's EndpointSlices through
// the API, and on every change of the ready addresses rewrites the
// proxy's upstreams and applies them the way its mode says:
//
//	nginx-reload      nginx.conf rewritten, `nginx -s reload` (SIGHUP)
//	haproxy-reload    haproxy.cfg rewritten, the master (-W) reloads
//	                  (SIGUSR2): its new worker takes the listening
//	                  sockets over from the old one (HAProxy 2.x passes
//	                  them through the master), a seamless reload
//	haproxy-sf        haproxy.cfg rewritten, a new HAProxy process
//	                  started with -sf (no master): it binds listening
//	                  sockets of its own and tells the old process to
//	                  finish, which closes its own: the reload before
//	                  seamless reloads
//	nginx-gray        a gray release: two Services (-service v1,v2), each
//	                  pod a server weighted as its Service (0: down);
//	                  the weights change and nginx reloads only when the
//	                  operator says (lb -set-weights), never on an
//	                  endpoint change: the upstream is static, as in the
//	                  gray releases of the source documents
//	haproxy-runtime   no reload: a fixed set of server slots, addresses
//	                  set and slots enabled or disabled through the
//	                  runtime API
//
// lb -reload, run in the container, has it reload the proxy with the
// backends it has, as an operator's reload for another reason (a
// certificate, a new route) would. It writes one JSON lifecycle line per
// step (the sample app's format),
// so nodrop's timeline shows every backend change and reload. Standard
// library only, like every program under images/.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nodrop-dev/nodrop/lifecycle"
)

// slots is how many servers haproxy-runtime's backend can hold.
const slots = 16

const (
	confDir     = "/run/lb"
	adminSocket = confDir + "/admin.sock"
	// masterSocket is HAProxy's master CLI: which worker is current.
	masterSocket = confDir + "/master.sock"
)

type config struct {
	mode      string
	service   string
	namespace string
	port      int // the pods' port
	listen    int
	readyPort int
	pod       string
	weights   string // nginx-gray

	log *lifecycle.Writer // the lifecycle lines, on stdout
}

func main() {
	var cfg config
	flag.StringVar(&cfg.mode, "mode", os.Getenv("LB_MODE"), "nginx-reload, nginx-gray, haproxy-reload, haproxy-sf or haproxy-runtime")
	flag.StringVar(&cfg.service, "service", os.Getenv("LB_SERVICE"), "the Service whose ready pods are the upstreams")
	flag.IntVar(&cfg.port, "port", 8080, "the pods' port")
	flag.IntVar(&cfg.listen, "listen", 8080, "the port the proxy listens on")
	flag.IntVar(&cfg.readyPort, "ready-port", 8081, "the port of lb's readiness endpoint, /ready")
	flag.StringVar(&cfg.weights, "weights", "", "nginx-gray: the services' first weights, e.g. web-v1=100,web-v2=0")
	reload := flag.Bool("reload", false, "reload the proxy of the lb running in this container with the backends it has (no change of the pods), and exit")
	setWeights := flag.String("set-weights", "", "nginx-gray: set the weights of the lb running in this container (e.g. web-v1=90,web-v2=10), reload, and exit once applied")
	printConfig := flag.String("print-config", "", "print the proxy's configuration for these comma-separated backends (host:port) and exit")
	flag.Parse()
	cfg.namespace, cfg.pod = os.Getenv("POD_NAMESPACE"), os.Getenv("NODROP_POD")
	cfg.log = lifecycle.NewWriter(os.Stdout, lifecycle.Line{Pod: cfg.pod, Component: cfg.mode})
	if *reload {
		if err := requestReload(); err != nil {
			fmt.Fprintln(os.Stderr, "lb:", err)
			os.Exit(1)
		}
		return
	}
	if *setWeights != "" {
		if err := requestWeights(*setWeights); err != nil {
			fmt.Fprintln(os.Stderr, "lb:", err)
			os.Exit(1)
		}
		return
	}
	if *printConfig != "" {
		p, err := newProxy(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lb:", err)
			os.Exit(2)
		}
		os.Stdout.Write(p.render(strings.Split(*printConfig, ",")))
		return
	}
	if err := run(cfg); err != nil {
		logEvent(cfg, "exit", "error", err.Error())
		os.Exit(1)
	}
}

// reloadsFile counts the reloads lb -reload asked for and lb did.
const reloadsFile = confDir + "/reloads"

// requestReload is lb -reload: it asks the lb running as this
// container's PID 1 to reload its proxy and waits until it has, for at
// most 10 s.
func requestReload() error {
	count := func() int {
		b, _ := os.ReadFile(reloadsFile)
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	before := count()
	if err := syscall.Kill(1, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling lb (PID 1): %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if count() > before {
			return nil
		}
	}
	return errors.New("no reload within 10 s (see lb's log)")
}

// logEvent writes one lifecycle event as a JSON line.
func logEvent(cfg config, event string, fields ...any) {
	cfg.log.Write(event, fields...)
}

// logEventAt writes a lifecycle line stamped at.
func logEventAt(cfg config, at time.Time, event string, fields ...any) {
	cfg.log.WriteAt(at, event, fields...)
}

func run(cfg config) error {
	p, err := newProxy(cfg)
	if err != nil {
		return err
	}
	if cfg.service == "" || cfg.namespace == "" {
		return errors.New("needs -service and $POD_NAMESPACE")
	}
	api, err := inCluster()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.mode == "nginx-gray" {
		return runGray(ctx, cfg, p, api)
	}

	// Ready once the proxy runs with at least one backend: before that
	// it would answer 503.
	var ready atomic.Bool
	go serveReady(cfg, &ready)
	changes := make(chan []string, 1)
	go watchSlices(ctx, api, cfg, changes)
	// SIGHUP (lb -reload) reloads the proxy with the backends it has: a
	// reload with no change of the pods, as an operator's.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var current []string
	started := false
	reloads := 0
	for {
		select {
		case <-hup:
			if !started {
				continue
			}
			logEvent(cfg, "reload requested", "backends", len(current))
			t0 := time.Now()
			at, err := p.reload(current)
			if err != nil {
				logEvent(cfg, "reload failed", "error", err.Error())
				continue
			}
			reloads++
			logEventAt(cfg, at, "reloaded", "took_ms", ms(time.Since(t0)), "requested", true)
			if err := os.WriteFile(reloadsFile, []byte(strconv.Itoa(reloads)), 0o644); err != nil {
				logEvent(cfg, "reload not recorded", "error", err.Error())
			}
		case <-ctx.Done():
			if started {
				logEvent(cfg, "stopping")
				return p.stop()
			}
			return nil
		case err := <-p.exited():
			return fmt.Errorf("proxy exited: %w", err)
		case backends := <-changes:
			if started && slices.Equal(backends, current) {
				continue
			}
			logEvent(cfg, "backends", "backends", len(backends), "addresses", strings.Join(backends, " "))
			t0 := time.Now()
			if !started {
				if err := p.start(backends); err != nil {
					return err
				}
				started = true
				logEvent(cfg, "proxy started", "took_ms", ms(time.Since(t0)))
			} else if at, err := p.apply(backends); err != nil {
				logEvent(cfg, "apply failed", "error", err.Error())
				retry(changes, backends)
				continue
			} else {
				logEventAt(cfg, at, p.applied(), "took_ms", ms(time.Since(t0)))
			}
			current = backends
			ready.Store(len(backends) > 0)
		}
	}
}

// serveReady answers /ready on the readiness port: 200 once the proxy
// runs with backends, 503 before.
func serveReady(cfg config, ready *atomic.Bool) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "no backends yet", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Addr: fmt.Sprintf(":%d", cfg.readyPort), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		logEvent(cfg, "readiness port failed", "error", err.Error())
	}
}

// retry offers backends again in a second, unless a newer set came.
func retry(changes chan []string, backends []string) {
	time.AfterFunc(time.Second, func() {
		select {
		case changes <- backends:
		default: // a newer set is waiting
		}
	})
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// proxy is one of the modes.
type proxy struct {
	cfg   config
	cmd   *exec.Cmd
	done  chan error
	slots [slots]string // haproxy-runtime: each slot's address, "" if free
}

func newProxy(cfg config) (*proxy, error) {
	switch cfg.mode {
	case "nginx-reload", "nginx-gray", "haproxy-reload", "haproxy-sf", "haproxy-runtime":
		return &proxy{cfg: cfg, done: make(chan error, 1)}, nil
	}
	return nil, fmt.Errorf("unknown mode %q", cfg.mode)
}

func (p *proxy) nginx() bool { return p.cfg.mode == "nginx-reload" || p.cfg.mode == "nginx-gray" }

func (p *proxy) confPath() string {
	if p.nginx() {
		return confDir + "/nginx.conf"
	}
	return confDir + "/haproxy.cfg"
}

func (p *proxy) start(backends []string) error {
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return err
	}
	if err := p.write(backends); err != nil {
		return err
	}
	var args []string
	switch {
	case p.nginx():
		args = []string{"/usr/sbin/nginx", "-e", "stderr", "-c", p.confPath(), "-g", "daemon off;"}
	case p.cfg.mode == "haproxy-sf":
		args = []string{"/usr/sbin/haproxy", "-db", "-f", p.confPath()}
	default:
		args = []string{"/usr/sbin/haproxy", "-W", "-db", "-S", masterSocket, "-f", p.confPath()}
	}
	if err := p.run(args...); err != nil {
		return err
	}
	switch p.cfg.mode {
	case "haproxy-runtime":
		return waitFor(adminSocket, 5*time.Second)
	case "haproxy-reload":
		return waitFor(masterSocket, 5*time.Second)
	}
	return nil
}

// run starts the proxy process that is current from now on.
func (p *proxy) run(args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *proxy) exited() <-chan error { return p.done }

// applied names what apply did, for the timeline.
func (p *proxy) applied() string {
	if p.cfg.mode == "haproxy-runtime" {
		return "servers set"
	}
	return "reloaded"
}

// apply makes backends the proxy's, and returns when that took effect
// (as reload).
func (p *proxy) apply(backends []string) (time.Time, error) {
	if p.cfg.mode == "haproxy-runtime" {
		err := p.setServers(backends)
		return time.Now(), err
	}
	return p.reload(backends)
}

// reload rewrites the configuration for backends and reloads the proxy
// the mode's way; in haproxy-runtime mode, as haproxy-reload (an
// operator's reload for another reason: the configuration is written
// from lb's record of the slots, so no server set at runtime is lost).
// It returns when the reload took effect, which its lifecycle line is
// stamped with: in haproxy-sf mode the moment the old process's listening
// socket closed, before that process exits; otherwise once the proxy
// has it.
func (p *proxy) reload(backends []string) (time.Time, error) {
	if err := p.write(backends); err != nil {
		return time.Time{}, err
	}
	switch p.cfg.mode {
	case "nginx-reload", "nginx-gray":
		err := p.cmd.Process.Signal(syscall.SIGHUP) // what nginx -s reload sends
		return time.Now(), err
	case "haproxy-sf":
		// The old process finishes what it has and exits; its exit is
		// no longer the proxy's. One reload at a time here too: a new
		// process started before the last one has told its predecessor
		// to stop can leave a process with old backends listening (seen:
		// a gone pod kept half the new connections). The old process
		// exits once the new one has bound its sockets and it has
		// finished its connections.
		//
		// The reload takes effect, and loses what it loses, when the old
		// process closes its listening socket, not when it exits: that
		// can be seconds later on a busy machine, once its last
		// connections end. So the sockets listening on the port are
		// watched, and the reload is stamped when the old ones are gone.
		old, oldDone := p.cmd, p.done
		before, _ := listeningSockets(p.cfg.listen)
		if err := p.run("/usr/sbin/haproxy", "-db", "-f", p.confPath(), "-sf", strconv.Itoa(old.Process.Pid)); err != nil {
			return time.Time{}, err
		}
		var closed time.Time
		deadline := time.After(5 * time.Second)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-oldDone:
				if closed.IsZero() {
					closed = time.Now()
				}
				return closed, nil
			case <-deadline:
				return time.Time{}, fmt.Errorf("HAProxy %d still runs 5 s after its successor started", old.Process.Pid)
			case <-tick.C:
				if closed.IsZero() && len(before) > 0 && closedAll(p.cfg.listen, before) {
					closed = time.Now()
				}
			}
		}
	}
	// HAProxy's master re-executes itself to reload, and a SIGUSR2 that
	// arrives meanwhile is lost: the proxy would keep the backends of the
	// reload before (seen: a gone pod kept a third of the requests). So
	// one reload at a time: signal, then wait until a new worker is
	// current; changes that came meanwhile make the next reload.
	before, err := currentWorker()
	if err != nil {
		return time.Time{}, err
	}
	if err := p.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return time.Time{}, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if now, err := currentWorker(); err == nil && now != before {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no new HAProxy worker 10 s after the reload signal (worker %s still current)", before)
		}
	}
}

// currentWorker is the PID of HAProxy's current worker, from the master
// CLI's "show proc": the first line under "# workers".
func currentWorker() (string, error) {
	// The master CLI keeps the connection open after a command unless
	// told to quit.
	out, err := socketCommand(masterSocket, "show proc; quit")
	if err != nil {
		return "", err
	}
	workers := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "# workers"):
			workers = true
		case strings.HasPrefix(line, "#"):
			workers = false
		case workers && len(strings.Fields(line)) > 0:
			return strings.Fields(line)[0], nil
		}
	}
	return "", fmt.Errorf("no current worker in %q", out)
}

// stop stops the proxy gracefully: nginx's QUIT, HAProxy's USR1 (soft
// stop), each finishing what is in flight.
func (p *proxy) stop() error {
	sig := syscall.SIGUSR1
	if p.nginx() {
		sig = syscall.SIGQUIT
	}
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		return err
	case <-time.After(25 * time.Second):
		p.cmd.Process.Kill()
		return errors.New("the proxy did not stop within 25 s")
	}
}

func (p *proxy) write(backends []string) error {
	tmp := p.confPath() + ".tmp"
	if err := os.WriteFile(tmp, p.render(backends), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.confPath())
}

// render is the proxy's configuration for backends.
func (p *proxy) render(backends []string) []byte {
	var b bytes.Buffer
	switch p.cfg.mode {
	case "nginx-reload", "nginx-gray":
		fmt.Fprintf(&b, "worker_processes 1;\npid %[1]s/nginx.pid;\nerror_log stderr notice;\nevents { worker_connections 4096; }\nhttp {\n  access_log off;\n  client_body_temp_path %[1]s/body;\n  proxy_temp_path %[1]s/proxy;\n  fastcgi_temp_path %[1]s/fastcgi;\n  uwsgi_temp_path %[1]s/uwsgi;\n  scgi_temp_path %[1]s/scgi;\n", confDir)
		b.WriteString("  upstream pods {\n")
		for _, a := range backends {
			fmt.Fprintf(&b, "    server %s;\n", a)
		}
		if len(backends) == 0 {
			b.WriteString("    server 127.0.0.1:1 down;\n") // nginx needs one
		}
		b.WriteString("    keepalive 64;\n  }\n")
		fmt.Fprintf(&b, "  server {\n    listen %d backlog=4096;\n    location = /healthz { return 200 \"ok\\n\"; }\n    location / {\n      proxy_pass http://pods;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_connect_timeout 2s;\n      proxy_next_upstream off;\n    }\n  }\n}\n", p.cfg.listen)
	default:
		b.WriteString("global\n  log stderr format raw local0 notice\n")
		switch p.cfg.mode {
		case "haproxy-runtime":
			fmt.Fprintf(&b, "  stats socket %s mode 600 level admin expose-fd listeners\n", adminSocket)
		}
		b.WriteString("defaults\n  mode http\n  log global\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout http-keep-alive 30s\n  retries 0\n")
		fmt.Fprintf(&b, "frontend fe\n  bind :%d backlog 4096\n  monitor-uri /healthz\n  default_backend pods\n", p.cfg.listen)
		b.WriteString("backend pods\n  balance roundrobin\n")
		if p.cfg.mode == "haproxy-runtime" {
			for i := range slots {
				addr, state := "127.0.0.1:1", " disabled"
				if i < len(backends) {
					addr, state = backends[i], ""
					p.slots[i] = addr
				}
				fmt.Fprintf(&b, "  server s%d %s%s\n", i+1, addr, state)
			}
		} else {
			for i, a := range backends {
				fmt.Fprintf(&b, "  server s%d %s\n", i+1, a)
			}
		}
	}
	return b.Bytes()
}

// setServers puts backends into the slots through the runtime API:
// slots that keep their address stay; a gone address's slot goes to
// maintenance (no new requests; those in flight finish); a new address
// takes a free slot. lb is the only writer, so its own record of the
// slots is the truth.
func (p *proxy) setServers(backends []string) error {
	for i, a := range p.slots {
		if a == "" || slices.Contains(backends, a) {
			continue
		}
		if _, err := runtimeCommand(fmt.Sprintf("set server pods/s%d state maint", i+1)); err != nil {
			return err
		}
		p.slots[i] = ""
	}
	for _, a := range backends {
		if slices.Contains(p.slots[:], a) {
			continue
		}
		i := slices.Index(p.slots[:], "")
		if i < 0 {
			return fmt.Errorf("more than %d backends", slots)
		}
		host, port, _ := net.SplitHostPort(a)
		for _, c := range []string{
			fmt.Sprintf("set server pods/s%d addr %s port %s", i+1, host, port),
			fmt.Sprintf("set server pods/s%d state ready", i+1),
		} {
			if _, err := runtimeCommand(c); err != nil {
				return err
			}
		}
		p.slots[i] = a
	}
	return nil
}

// runtimeCommand sends one command to HAProxy's runtime API.
func runtimeCommand(cmd string) (string, error) { return socketCommand(adminSocket, cmd) }

// socketCommand sends one command to an HAProxy CLI socket.
func socketCommand(path, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	s := string(out)
	if strings.Contains(s, "No such") || strings.Contains(s, "Unknown") || strings.Contains(s, "Require") {
		return s, fmt.Errorf("%s: %s", cmd, strings.TrimSpace(s))
	}
	return s, nil
}

func waitFor(path string, within time.Duration) error {
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, within)
		}
	}
}

// api is the in-cluster API server, reached with the pod's service
// account.
type api struct {
	base   string
	token  string
	client *http.Client
}

func inCluster() (*api, error) {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	token, err := os.ReadFile(sa + "token")
	if err != nil || host == "" {
		return nil, fmt.Errorf("not in a pod with a service account: %v", err)
	}
	ca, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &api{
		base:   "https://" + net.JoinHostPort(host, port),
		token:  strings.TrimSpace(string(token)),
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
	}, nil
}

func (a *api) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return resp, nil
}

// slice is the part of an EndpointSlice lb reads.
type slice struct {
	Metadata struct {
		Name            string `json:"name"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Endpoints []struct {
		Addresses  []string `json:"addresses"`
		Conditions struct {
			Ready *bool `json:"ready"`
		} `json:"conditions"`
	} `json:"endpoints"`
	Ports []struct {
		Port *int `json:"port"`
	} `json:"ports"`
}

// watchSlices lists and then watches the Service's EndpointSlices and
// sends the sorted ready addresses after every change, starting over
// (after a second) whenever the watch ends, until ctx ends.
func watchSlices(ctx context.Context, a *api, cfg config, out chan []string) {
	path := "/apis/discovery.k8s.io/v1/namespaces/" + cfg.namespace + "/endpointslices"
	sel := "kubernetes.io/service-name=" + cfg.service
	var mu sync.Mutex
	slicesByName := map[string]slice{}
	send := func() {
		mu.Lock()
		set := map[string]bool{}
		for _, s := range slicesByName {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, addr := range e.Addresses {
					set[net.JoinHostPort(addr, fmt.Sprint(cfg.port))] = true
				}
			}
		}
		mu.Unlock()
		var list []string
		for k := range set {
			list = append(list, k)
		}
		slices.Sort(list)
		select { // only the latest set matters
		case <-out:
		default:
		}
		out <- list
	}
	for ctx.Err() == nil {
		err := func() error {
			resp, err := a.get(ctx, path, url.Values{"labelSelector": {sel}})
			if err != nil {
				return err
			}
			var list struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
				Items []slice `json:"items"`
			}
			err = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if err != nil {
				return err
			}
			mu.Lock()
			clear(slicesByName)
			for _, s := range list.Items {
				slicesByName[s.Metadata.Name] = s
			}
			mu.Unlock()
			send()
			resp, err = a.get(ctx, path, url.Values{"labelSelector": {sel}, "watch": {"1"}, "resourceVersion": {list.Metadata.ResourceVersion}})
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			dec := json.NewDecoder(bufio.NewReader(resp.Body))
			for {
				var ev struct {
					Type   string `json:"type"`
					Object slice  `json:"object"`
				}
				if err := dec.Decode(&ev); err != nil {
					return err
				}
				mu.Lock()
				switch ev.Type {
				case "ADDED", "MODIFIED":
					slicesByName[ev.Object.Metadata.Name] = ev.Object
				case "DELETED":
					delete(slicesByName, ev.Object.Metadata.Name)
				case "ERROR":
					mu.Unlock()
					return errors.New("watch error (resource version too old?)")
				}
				mu.Unlock()
				send()
			}
		}()
		if ctx.Err() != nil {
			return
		}
		logEvent(cfg, "watch restarted", "error", fmt.Sprint(err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// listeningSockets are the inodes of the TCP sockets listening on port
// in this network namespace (/proc/net/tcp and tcp6).
func listeningSockets(port int) (map[string]bool, error) {
	out := map[string]bool{}
	hexPort := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) >= 10 && f[3] == "0A" && strings.HasSuffix(f[1], hexPort) {
				out[f[9]] = true
			}
		}
	}
	return out, nil
}

// closedAll says whether none of the sockets in before listens on port
// any more.
func closedAll(port int, before map[string]bool) bool {
	now, err := listeningSockets(port)
	if err != nil {
		return false
	}
	for inode := range before {
		if now[inode] {
			return false
		}
	}
	return true
}

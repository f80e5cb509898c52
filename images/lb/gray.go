package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// A gray release's weights travel through two files: the operator's
// request (lb -set-weights writes it and sends lb SIGHUP) and what lb
// applied (written once nginx has reloaded with it).
const (
	weightsFile = confDir + "/weights"
	appliedFile = confDir + "/applied"
)

// weights are each Service's weight, in the order -service named them.
type weights struct {
	services []string
	weight   map[string]int
}

// parseWeights reads "web-v1=90,web-v2=10"; every service must be one
// of services.
func parseWeights(s string, services []string) (weights, error) {
	w := weights{services: services, weight: map[string]int{}}
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		v, err := strconv.Atoi(n)
		if !ok || err != nil || v < 0 || v > 1000 {
			return w, fmt.Errorf("weight %q: want SERVICE=0..1000", part)
		}
		known := false
		for _, s := range services {
			known = known || s == name
		}
		if !known {
			return w, fmt.Errorf("weight %q: no service %s (have %s)", part, name, strings.Join(services, ", "))
		}
		w.weight[name] = v
	}
	return w, nil
}

func (w weights) String() string {
	var parts []string
	for _, s := range w.services {
		parts = append(parts, fmt.Sprintf("%s=%d", s, w.weight[s]))
	}
	return strings.Join(parts, ",")
}

// servers are the upstream's server lines: every ready pod of each
// Service, weighted as its Service, or down at weight 0 (nginx sends a
// down server nothing).
func (w weights) servers(addrs map[string][]string) []string {
	var out []string
	for _, s := range w.services {
		for _, a := range addrs[s] {
			if n := w.weight[s]; n > 0 {
				out = append(out, fmt.Sprintf("%s weight=%d", a, n))
			} else {
				out = append(out, a+" down")
			}
		}
	}
	return out
}

// runGray serves a gray release: nginx starts once every Service has a
// ready pod, with the first weights; after that only the operator's
// requests change the upstream (endpoint changes are logged, not
// applied, as with an upstream written by hand).
func runGray(ctx context.Context, cfg config, p *proxy, a *api) error {
	services := strings.Split(cfg.service, ",")
	w, err := parseWeights(cfg.weights, services)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	go serveReady(cfg, &ready)
	type change struct {
		service string
		addrs   []string
	}
	changes := make(chan change, len(services))
	for _, s := range services {
		c := cfg
		c.service = s
		ch := make(chan []string, 1)
		go watchSlices(ctx, a, c, ch)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case addrs := <-ch:
					changes <- change{s, addrs}
				}
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	addrs := map[string][]string{}
	started := false
	for {
		select {
		case <-ctx.Done():
			if started {
				logEvent(cfg, "stopping")
				return p.stop()
			}
			return nil
		case err := <-p.exited():
			return fmt.Errorf("proxy exited: %w", err)
		case c := <-changes:
			addrs[c.service] = c.addrs
			logEvent(cfg, "endpoints", "service", c.service, "backends", len(c.addrs), "addresses", strings.Join(c.addrs, " "))
			if started {
				continue // static: the operator reloads
			}
			every := true
			for _, s := range services {
				every = every && len(addrs[s]) > 0
			}
			if !every {
				continue
			}
			t0 := time.Now()
			if err := p.start(w.servers(addrs)); err != nil {
				return err
			}
			started = true
			if err := os.WriteFile(appliedFile, []byte(w.String()), 0o644); err != nil {
				return err
			}
			ready.Store(true)
			logEvent(cfg, "proxy started", "weights", w.String(), "took_ms", ms(time.Since(t0)))
		case <-hup:
			raw, err := os.ReadFile(weightsFile)
			if err != nil {
				logEvent(cfg, "weights not read", "error", err.Error())
				continue
			}
			next, err := parseWeights(strings.TrimSpace(string(raw)), services)
			if err != nil {
				logEvent(cfg, "weights not read", "error", err.Error())
				continue
			}
			if !started {
				w = next // the first start uses them
				continue
			}
			t0 := time.Now()
			if _, err := p.apply(next.servers(addrs)); err != nil {
				logEvent(cfg, "apply failed", "error", err.Error())
				continue
			}
			w = next
			if err := os.WriteFile(appliedFile, []byte(w.String()), 0o644); err != nil {
				logEvent(cfg, "apply failed", "error", err.Error())
				continue
			}
			logEvent(cfg, "reloaded", "weights", w.String(), "took_ms", ms(time.Since(t0)))
		}
	}
}

// requestWeights is lb -set-weights: it asks the lb running as this
// container's PID 1 for new weights and waits until they are applied
// (nginx reloaded with them), for at most 10 s.
func requestWeights(s string) error {
	if err := os.WriteFile(weightsFile+".tmp", []byte(s), 0o644); err != nil {
		return err
	}
	if err := os.Rename(weightsFile+".tmp", weightsFile); err != nil {
		return err
	}
	if err := syscall.Kill(1, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling lb (PID 1): %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		// What lb applied is in its own order: compare as sets.
		applied, err := os.ReadFile(appliedFile)
		if err == nil && sameWeights(strings.TrimSpace(string(applied)), s) {
			return nil
		}
	}
	return fmt.Errorf("weights %s not applied within 10 s (see lb's log)", s)
}

func sameWeights(a, b string) bool {
	set := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, p := range strings.Split(s, ",") {
			m[strings.TrimSpace(p)] = true
		}
		return m
	}
	x, y := set(a), set(b)
	if len(x) != len(y) {
		return false
	}
	for k := range x {
		if !y[k] {
			return false
		}
	}
	return true
}

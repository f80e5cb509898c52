package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/probes"
)

// ingressPoll is how often the controller's view is read: a change shows
// on the timeline within it.
const ingressPoll = 50 * time.Millisecond

// traefikService is what Traefik's API says of one service: the servers
// it balances over, fenced ones (terminating but still serving) taking
// no new requests.
type traefikService struct {
	LoadBalancer struct {
		Servers []struct {
			URL    string `json:"url"`
			Fenced bool   `json:"fenced"`
		} `json:"servers"`
	} `json:"loadBalancer"`
}

// followIngress reads, every ingressPoll until stopped, which pods the
// controller routes the run's Service to, and records each change as a
// probes.Ingress event. Only Traefik's API is known (c.API); for another
// controller it records nothing.
func followIngress(ctx context.Context, env Env, ns string, t *Resolved, rec *probes.Recorder) (stop func(), err error) {
	c := env.Ingress
	if c == nil || c.API == "" {
		return func() {}, nil
	}
	np, err := kube.NodePortOf(ctx, env.Client, c.Namespace, c.Service, c.API, func(p corev1.ServicePort) bool { return p.Name == c.API })
	if err != nil {
		return nil, fmt.Errorf("the ingress controller's API: %w", err)
	}
	// Traefik names an Ingress backend namespace-service-port, from its
	// Kubernetes Ingress provider.
	id := fmt.Sprintf("%s-%s-%d@kubernetes", ns, t.Service.Name, t.Port.Port)
	u := "http://" + net.JoinHostPort(env.NodeIP, strconv.Itoa(int(np))) + "/api/http/services/" + url.PathEscape(id)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer client.CloseIdleConnections()
		last := ""
		tick := time.NewTicker(ingressPoll)
		defer tick.Stop()
		for {
			if view, ok := readIngress(pctx, client, u, rec.PodWithIP); ok && view != last {
				rec.Record(probes.Event{At: time.Now(), Kind: probes.Ingress, Detail: c.Name + " " + view})
				last = view
			}
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); wg.Wait() }, nil
}

// readIngress is the controller's view of the Service, said in pods:
// "routes to a, b (fenced: c)", or "has no route" when it has dropped
// the Service. ok is false when the API did not answer.
func readIngress(ctx context.Context, client *http.Client, u string, podWithIP func(ip string) string) (view string, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", false
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "has no route to the Service", true
	}
	var s traefikService
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&s) != nil {
		return "", false
	}
	var serving, fenced []string
	for _, srv := range s.LoadBalancer.Servers {
		name := srv.URL
		if pu, err := url.Parse(srv.URL); err == nil {
			if pod := podWithIP(pu.Hostname()); pod != "" {
				name = pod
			}
		}
		if srv.Fenced {
			fenced = append(fenced, name)
		} else {
			serving = append(serving, name)
		}
	}
	slices.Sort(serving)
	slices.Sort(fenced)
	view = "routes to " + strings.Join(serving, ", ")
	if len(serving) == 0 {
		view = "routes to no ready pod"
	}
	if len(fenced) > 0 {
		view += "; terminating, no new requests: " + strings.Join(fenced, ", ")
	}
	return view, true
}

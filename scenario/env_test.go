package scenario_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/nodrop-dev/nodrop/kube"
	"github.com/nodrop-dev/nodrop/scenario"
)

// apiServer answers GET /api/v1/nodes with nodes, counting the calls.
func apiServer(t *testing.T, nodes ...corev1.Node) (*rest.Config, *int) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/nodes" {
			http.NotFound(w, r)
			return
		}
		calls++
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, Items: nodes})
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}, &calls
}

func node(name, ip string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

// The cluster's parts come from the cluster, the caller's as given.
func TestNewEnvAddsTheClustersParts(t *testing.T) {
	rc, calls := apiServer(t, node("kind-control-plane", "172.18.0.2"), node("kind-worker", "172.18.0.3"))
	env, err := scenario.NewEnv(context.Background(), rc, scenario.Env{Keep: true})
	if err != nil {
		t.Fatal(err)
	}
	if env.NodeIP != "172.18.0.2" || env.Client == nil || env.REST.QPS != 50 || env.REST.Burst != 100 || !env.Keep {
		t.Errorf("node %q, client %v, QPS %v burst %d, keep %v", env.NodeIP, env.Client != nil, env.REST.QPS, env.REST.Burst, env.Keep)
	}
	if env.Timeouts != kube.DefaultTimeouts() {
		t.Errorf("timeouts %+v, want the defaults", env.Timeouts)
	}
	if rc.QPS != 0 {
		t.Errorf("the caller's rest.Config changed (QPS %v)", rc.QPS)
	}
	// A node address or URL given is kept, and the nodes are not asked.
	*calls = 0
	for _, given := range []scenario.Env{{NodeIP: "10.0.0.9"}, {URL: "http://shop.example/"}} {
		env, err := scenario.NewEnv(context.Background(), rc, given)
		if err != nil || env.NodeIP != given.NodeIP || *calls != 0 {
			t.Errorf("given %q %q: node %q, %d calls, %v", given.NodeIP, given.URL, env.NodeIP, *calls, err)
		}
	}
}

func TestNewEnvWithoutANodeAddress(t *testing.T) {
	rc, _ := apiServer(t, node("bare", ""))
	if _, err := scenario.NewEnv(context.Background(), rc, scenario.Env{}); !errors.Is(err, scenario.ErrNoNodeAddress) {
		t.Errorf("err %v, want ErrNoNodeAddress", err)
	}
}

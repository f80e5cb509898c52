package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// A cluster whose API server is not ready is said so, with its node
// containers, once the wait is over; it is not taken for one that answers.
func TestAnswersSaysWhyNot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
	}))
	defer srv.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = Answers(context.Background(), "nodrop-no-such-cluster", client, 2*time.Second)
	if err == nil {
		t.Fatal("a cluster whose API server is not ready answers")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %s to say so, for a wait of 2s", took)
	}
	for _, want := range []string{`cluster "nodrop-no-such-cluster" did not answer within 2s`, "the API server", "its node containers:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

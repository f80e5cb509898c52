package matchers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/nodrop-dev/nodrop/loadgen"
	. "github.com/nodrop-dev/nodrop/suites/matchers"
)

func load(t *testing.T, status int) *loadgen.Report {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{srv.URL}, Rate: 100, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMatchersOnRealReports(t *testing.T) {
	g := gomega.NewWithT(t)
	good, bad := load(t, http.StatusOK), load(t, http.StatusBadGateway)
	g.Expect(good).To(BeLossless())
	g.Expect(bad).NotTo(BeLossless())

	msg := BeLossless().FailureMessage(bad)
	for _, want := range []string{"lost", "http_5xx", "longest outage"} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure message lacks %q:\n%s", want, msg)
		}
	}
	if _, err := BeLossless().Match("not a report"); err == nil {
		t.Error("matching a string should be an error")
	}
	if ok, _ := BeLossless().Match(&loadgen.Report{}); ok {
		t.Error("an empty report must not count as lossless")
	}
}

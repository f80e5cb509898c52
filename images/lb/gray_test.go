package main

import (
	"slices"
	"strings"
	"testing"
)

func TestWeightsMakeTheUpstream(t *testing.T) {
	services := []string{"web-v1", "web-v2"}
	w, err := parseWeights("web-v2=10, web-v1=90", services)
	if err != nil {
		t.Fatal(err)
	}
	if w.String() != "web-v1=90,web-v2=10" {
		t.Errorf("String() = %q", w.String())
	}
	addrs := map[string][]string{"web-v1": {"10.0.0.1:8080", "10.0.0.2:8080"}, "web-v2": {"10.0.0.3:8080"}}
	want := []string{"10.0.0.1:8080 weight=90", "10.0.0.2:8080 weight=90", "10.0.0.3:8080 weight=10"}
	if got := w.servers(addrs); !slices.Equal(got, want) {
		t.Errorf("servers %q, want %q", got, want)
	}
	w, _ = parseWeights("web-v1=0,web-v2=100", services)
	if got := w.servers(addrs); got[0] != "10.0.0.1:8080 down" || got[2] != "10.0.0.3:8080 weight=100" {
		t.Errorf("a weight of 0 is not down: %q", got)
	}
	for _, bad := range []string{"web-v3=1", "web-v1", "web-v1=-1", "web-v1=x"} {
		if _, err := parseWeights(bad, services); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !sameWeights("web-v1=90,web-v2=10", "web-v2=10,web-v1=90") || sameWeights("web-v1=90", "web-v1=90,web-v2=10") {
		t.Error("sameWeights")
	}
	p, _ := newProxy(config{mode: "nginx-gray", listen: 8080})
	conf := string(p.render(w.servers(addrs)))
	if !strings.Contains(conf, "server 10.0.0.1:8080 down;") || !strings.Contains(conf, "server 10.0.0.3:8080 weight=100;") {
		t.Errorf("nginx.conf:\n%s", conf)
	}
}

package loadgen_test

import (
	"strings"
	"testing"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// A load names its protocol and its connection behaviour, and builds the
// config and the URL from them alone.
func TestLoadBuildsConfigAndTarget(t *testing.T) {
	for _, tc := range []struct {
		load       loadgen.Load
		target     string
		http       bool
		fresh      bool
		conns, inf int
	}{
		{loadgen.Load{Name: "keepalive"}, "http://10.0.0.1:30080/ping", true, false, 0, 0},
		{loadgen.Load{Name: "fresh", Fresh: true}, "http://10.0.0.1:30080/ping", true, true, 0, 0},
		{loadgen.Load{Name: "long-lived HTTP/1.1", Connections: 10}, "http://10.0.0.1:30080/ping", true, false, 10, 0},
		{loadgen.Load{Name: "long-lived RPC", Scheme: "rpc", Connections: 2, InFlight: 8}, "rpc://10.0.0.1:30080", false, false, 2, 8},
		{loadgen.Load{Name: "long-lived gRPC", Scheme: "grpc", Connections: 4, InFlight: 4}, "grpc://10.0.0.1:30080/ping", false, false, 4, 4},
	} {
		if got := tc.load.Target("10.0.0.1:30080", "ping"); got != tc.target {
			t.Errorf("%s: target %q, want %q", tc.load.Name, got, tc.target)
		}
		if tc.load.SpeaksHTTP() != tc.http {
			t.Errorf("%s: speaks HTTP %v", tc.load.Name, !tc.http)
		}
		if tc.load.Scheme == "grpc" {
			if got := tc.load.Target("10.0.0.1:30080", "/"); got != "grpc://10.0.0.1:30080" {
				t.Errorf("gRPC at /: target %q, want the health service's (no method)", got)
			}
		}
		cfg := tc.load.Apply(loadgen.Config{Rate: 100, DisableKeepAlive: !tc.fresh, Connections: 99})
		if cfg.Rate != 100 || cfg.DisableKeepAlive != tc.fresh || cfg.Connections != tc.conns || cfg.InFlight != tc.inf {
			t.Errorf("%s: config %+v", tc.load.Name, cfg)
		}
		cfg.Targets = []string{tc.target}
		if _, err := cfg.Normalize(); err != nil {
			t.Errorf("%s: %v", tc.load.Name, err)
		}
	}
}

// The schemes a config accepts come from the protocol table, and the
// errors name them.
func TestSchemesComeFromTheProtocolTable(t *testing.T) {
	for _, tc := range []struct {
		cfg  loadgen.Config
		want string
	}{
		{loadgen.Config{Targets: []string{"ftp://h:1"}}, "scheme must be http, https, rpc, grpc or h2c"},
		{loadgen.Config{Targets: []string{"rpc://h:1"}}, "rpc targets need long-lived mode"},
		{loadgen.Config{Targets: []string{"https://h:1"}, Connections: 1}, "long-lived mode speaks http, rpc, grpc or h2c"},
	} {
		_, err := tc.cfg.Normalize()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.cfg.Targets, err, tc.want)
		}
	}
}

package scenario

import (
	"testing"

	"github.com/nodrop-dev/nodrop/loadgen"
)

func TestLoadCost(t *testing.T) {
	kept := Traffic{Config: loadgen.Config{Rate: 1000}}
	fresh := Traffic{Load: loadgen.Load{Fresh: true}, Config: loadgen.Config{Rate: 1000}}
	longLived := Traffic{Load: loadgen.Load{Fresh: true, Connections: 10}, Config: loadgen.Config{Rate: 500}}
	for _, tc := range []struct {
		name string
		s    Scenario
		want int
	}{
		{"kept-alive, 1,000 rps", Scenario{Traffic: []Traffic{kept}}, 1},
		{"fresh, 1,000 rps", Scenario{Traffic: []Traffic{fresh}}, 2},
		{"fresh, 500 rps", Scenario{Traffic: []Traffic{{Load: loadgen.Load{Fresh: true}, Config: loadgen.Config{Rate: 500}}}}, 1},
		{"kept-alive, 100 rps", Scenario{Traffic: []Traffic{{Config: loadgen.Config{Rate: 100}}}}, 1},
		{"two long-lived loads of 500 rps", Scenario{Traffic: []Traffic{longLived, longLived}}, 1},
		{"fresh through the ingress, 500 rps", Scenario{Target: Target{Ingress: true}, Traffic: []Traffic{{Load: loadgen.Load{Fresh: true}, Config: loadgen.Config{Rate: 500}}}}, 2},
		{"kept-alive and fresh", Scenario{Traffic: []Traffic{kept, fresh}}, 3},
	} {
		if got := tc.s.LoadCost(); got != tc.want {
			t.Errorf("%s: cost %d, want %d", tc.name, got, tc.want)
		}
	}
}

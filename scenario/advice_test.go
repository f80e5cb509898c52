package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
	"github.com/nodrop-dev/nodrop/probes"
)

// lossesAt is a report with n losses of class c from t0+at, 1 ms apart.
func lossesAt(t0 time.Time, at time.Duration, n int, c loadgen.Class) *loadgen.Report {
	r := &loadgen.Report{Started: t0}
	for i := 0; i < n; i++ {
		r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(at + time.Duration(i)*time.Millisecond), Class: c})
	}
	return r
}

func TestAdviceNamesTheMechanismFromTheTimeline(t *testing.T) {
	t0 := time.Now()
	ev := func(at time.Duration, k probes.Kind, pod, detail string) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: k, Pod: pod, Detail: detail}
	}
	for _, tc := range []struct {
		name   string
		report *loadgen.Report
		events []probes.Event
		want   []string
	}{
		{
			name:   "SIGKILL at the end of the grace period",
			report: lossesAt(t0, 12*time.Second, 20, loadgen.EOF),
			events: []probes.Event{
				ev(2*time.Second, probes.PodDeleting, "old", "grace 10s"),
				ev(12200*time.Millisecond, probes.ContainerTerminated, "old", "app exited 137 = SIGKILL (Error)"),
			},
			want: []string{"10.0s after pod old was deleted", "SIGKILL of old", "exec-form CMD"},
		},
		{
			name:   "no preStop: the pod stops listening while still routed to",
			report: lossesAt(t0, 2*time.Second, 50, loadgen.Refused),
			events: []probes.Event{
				ev(1990*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			},
			want: []string{"after pod old was deleted", "still routed to the pod after it stopped listening", "preStop sleep"},
		},
		{
			name: "no preStop, gRPC: GracefulStop's GOAWAY sends clients back to the pod",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 2*time.Second, 50, loadgen.Refused)
				r.Protocol, r.Client.HTTP2 = "grpc", true
				return r
			}(),
			events: []probes.Event{
				ev(1990*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			},
			want: []string{"RPCs on connections clients opened to the pod after it closed its listener", "GOAWAY", "so GracefulStop begins once the endpoint is gone"},
		},
		{
			name: "gRPC Stop after a long preStop: the losses name the pod whose connections broke, not the latest deleted",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 40*time.Second, 6, loadgen.EOF)
				for i := range r.Losses {
					r.Losses[i].ConnPod = "old-a"
				}
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(4*time.Second, probes.EndpointReady, "new-a", ""),
				ev(5*time.Second, probes.PodDeleting, "old-a", "grace 60s"),
				ev(7*time.Second, probes.EndpointReady, "new-b", ""),
				ev(8*time.Second, probes.PodDeleting, "old-b", "grace 60s"),
				ev(40010*time.Millisecond, probes.App, "old-a", "sigterm (version=v1 signal=terminated pid=1)"),
				ev(40400*time.Millisecond, probes.ContainerTerminated, "old-a", "app exited 0 (Completed)"),
			},
			want: []string{"35.0s after pod old-a was deleted", "when it got SIGTERM, 35.0s after the deletion", "Stop with GracefulStop"},
		},
		{
			name: "clients that balance themselves learnt from DNS pods that did not serve yet",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 37*time.Second, 50, loadgen.HTTP5xx)
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(-5*time.Second, probes.EndpointReady, "old-a", ""),
				ev(time.Second, probes.EndpointReady, "new-a", ""),
				ev(1100*time.Millisecond, probes.PodDeleting, "old-a", "grace 60s"),
				ev(1150*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
				ev(36*time.Second, probes.App, "old-a", "sigterm (version=v1 signal=terminated pid=1)"),
				ev(36500*time.Millisecond, probes.ContainerTerminated, "old-a", "app exited 0 (Completed)"),
				ev(46*time.Second, probes.App, "new-a", "ready (version=v2 pid=1)"),
			},
			want: []string{"while new-a (an endpoint from +1.0s, its app ready at +46.0s) was sent traffic before serving", "learn pods from DNS", "native gRPC readiness probe"},
		},
		{
			name: "refused by pods DNS named before they listened, not by pods that are gone",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 37*time.Second, 50, loadgen.Refused)
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(-5*time.Second, probes.EndpointReady, "old-a", ""),
				ev(-5*time.Second, probes.App, "old-a", "ready (version=v1 pid=1)"),
				ev(time.Second, probes.EndpointReady, "new-a", ""),
				ev(1100*time.Millisecond, probes.PodDeleting, "old-a", "grace 60s"),
				ev(1150*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
				ev(36*time.Second, probes.App, "old-a", "sigterm (version=v1 signal=terminated pid=1)"),
				ev(36500*time.Millisecond, probes.ContainerTerminated, "old-a", "app exited 0 (Completed)"),
				ev(46*time.Second, probes.App, "new-a", "listening (version=v2 pid=1)"),
				ev(46*time.Second, probes.App, "new-a", "ready (version=v2 pid=1)"),
			},
			want: []string{"while new-a (an endpoint from +1.0s, its app ready at +46.0s) was sent traffic before serving", "no readiness probe"},
		},
		{
			name: "no preStop, gRPC, a new pod turning ready just after: its app was ready first, so not its readiness",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 2*time.Second, 50, loadgen.Refused)
				r.Protocol, r.Client.HTTP2 = "grpc", true
				return r
			}(),
			events: []probes.Event{
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
				ev(2600*time.Millisecond, probes.App, "new", "ready (version=v1 pid=1)"),
				ev(2800*time.Millisecond, probes.EndpointReady, "new", ""),
			},
			want: []string{"GracefulStop"},
		},
		{
			name: "clients that balance themselves knew only pods that are gone",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 12*time.Second, 50, loadgen.Refused)
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(-5*time.Second, probes.EndpointReady, "old-a", ""),
				ev(-5*time.Second, probes.EndpointReady, "old-b", ""),
				ev(3*time.Second, probes.EndpointReady, "new-a", ""),
				ev(3*time.Second, probes.PodDeleting, "old-a", "grace 30s"),
				ev(3100*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
				ev(6*time.Second, probes.EndpointReady, "new-b", ""),
				ev(7*time.Second, probes.PodDeleting, "old-b", "grace 30s"),
				ev(7100*time.Millisecond, probes.EndpointTerminating, "old-b", ""),
			},
			want: []string{"every pod ready as the load started (old-a, old-b", "while new-a, new-b were ready", "balance round_robin", "every 30 s", "preStop sleep above 30 s"},
		},
		{
			name: "clients that balance themselves, answered by a pod they reached: not that",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 12*time.Second, 5, loadgen.HTTP5xx)
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(-5*time.Second, probes.EndpointReady, "old-a", ""),
				ev(3*time.Second, probes.EndpointReady, "new-a", ""),
				ev(3*time.Second, probes.PodDeleting, "old-a", "grace 30s"),
				ev(3100*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
			},
			want: []string{"5 lost (http_5xx 5)"},
		},
		{
			name: "clients that balance themselves, one resolved pod still ready: not that",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 2*time.Second, 50, loadgen.Refused)
				r.Protocol, r.Client.HTTP2, r.Client.Balancer = "grpc", true, "round_robin"
				return r
			}(),
			events: []probes.Event{
				ev(-5*time.Second, probes.EndpointReady, "old", ""),
				ev(-5*time.Second, probes.EndpointReady, "other", ""),
				ev(1990*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			},
			want: []string{"RPCs on connections clients opened to the pod after it closed its listener"},
		},
		{
			name: "a bounded GracefulStop that ran out of time: the pod whose stop it was, not the latest deleted",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 13*time.Second, 2, loadgen.EOF)
				r.Protocol, r.Client.HTTP2 = "grpc", true
				return r
			}(),
			events: []probes.Event{
				ev(5*time.Second, probes.PodDeleting, "old-a", "grace 30s"),
				ev(10*time.Second, probes.App, "old-a", "sigterm (version=v1 signal=terminated pid=1)"),
				ev(11*time.Second, probes.PodDeleting, "old-b", "grace 30s"),
				ev(13010*time.Millisecond, probes.App, "old-a", "grpc_stop_timeout (version=v1 after=3s pid=1)"),
				ev(13100*time.Millisecond, probes.ContainerTerminated, "old-a", "app exited 0 (Completed)"),
			},
			want: []string{"8.0s after pod old-a was deleted", "bounded GracefulStop ran out of time on old-a", "End long streams yourself"},
		},
		{
			name: "Stop at SIGTERM, gRPC",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 7*time.Second, 10, loadgen.EOF)
				r.Protocol, r.Client.HTTP2 = "grpc", true
				return r
			}(),
			events: []probes.Event{
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(7100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			},
			want: []string{"closed connections with RPCs on them", "GracefulStop"},
		},
		{
			name:   "no preStop behind an ingress controller that applies the change 2 s late",
			report: lossesAt(t0, 2*time.Second, 50, loadgen.HTTP5xx),
			events: []probes.Event{
				ev(1*time.Second, probes.Ingress, "", "Traefik v3.6.12 routes to old, other"),
				ev(1990*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2050*time.Millisecond, probes.Ingress, "", "Traefik v3.6.12 routes to new, old, other"),
				ev(2100*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
				ev(4050*time.Millisecond, probes.Ingress, "", "Traefik v3.6.12 routes to new, other"),
			},
			want: []string{"still routed to the pod after it stopped listening", "the ingress controller (Traefik v3.6.12) sent it new requests until 2.0s after the deletion"},
		},
		{
			name:   "no readiness: the new pod gets traffic before it serves",
			report: lossesAt(t0, 2*time.Second, 50, loadgen.Refused),
			events: []probes.Event{
				ev(1990*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				// The old pod's preStop keeps it serving for 5 s.
				ev(7200*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			},
			want: []string{"after pod new's endpoint turned ready", "readiness passed too early", "HTTP readiness probe"},
		},
		{
			name:   "kept-alive connections cut at SIGTERM",
			report: lossesAt(t0, 2500*time.Millisecond, 30, loadgen.EOF),
			events: []probes.Event{
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
			},
			want: []string{"closed connections with requests on them", "Connection: close"},
		},
		{
			// Measured behind HAProxy and nginx reloading on every
			// endpoint change: the losses come with the reload, 0.1 s
			// after the deletion, five seconds before the pod's SIGTERM.
			name: "a proxy in front reloads",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 2100*time.Millisecond, 20, loadgen.Reset)
				r.Client.KeepAlive = true
				return r
			}(),
			events: []probes.Event{
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(2150*time.Millisecond, probes.App, "lb-1", "reloaded (component=nginx-reload took_ms=19)"),
			},
			want: []string{"as the proxy in front (lb-1) reloaded", "idle-close race, at the proxy", "without a reload"},
		},
		{
			// Measured behind HAProxy started anew with -sf: 103 resets
			// of fresh connections at one reload.
			name: "a proxy's reload closes its listening socket under fresh connections",
			report: func() *loadgen.Report {
				r := lossesAt(t0, 2100*time.Millisecond, 20, loadgen.Reset)
				r.Client.KeepAlive = false
				return r
			}(),
			events: []probes.Event{
				ev(2150*time.Millisecond, probes.App, "lb-1", "reloaded (component=haproxy-sf)"),
			},
			want: []string{"as the proxy in front (lb-1) reloaded", "closed its listening socket", "seamlessly"},
		},
		{
			name:   "a reload long before the losses is not their cause",
			report: lossesAt(t0, 2500*time.Millisecond, 30, loadgen.EOF),
			events: []probes.Event{
				ev(1*time.Second, probes.App, "lb-1", "reloaded (component=haproxy-reload)"),
				ev(2*time.Second, probes.PodDeleting, "old", "grace 30s"),
			},
			want: []string{"closed connections with requests on them"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Advise(tc.report, tc.events)
			if len(got) != 1 {
				t.Fatalf("want one episode, got %q", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("advice %q\nlacks %q", got[0], w)
				}
			}
			if strings.Contains(tc.name, "not that") && strings.Contains(got[0], "knew only pods that were gone") {
				t.Errorf("advice %q\nblames the clients' resolution", got[0])
			}
		})
	}
}

func TestAdviceNamesStaleConntrack(t *testing.T) {
	t0 := time.Now()
	r := lossesAt(t0, 2500*time.Millisecond, 50, loadgen.Timeout)
	late := lossesAt(t0, 9*time.Second, 10, loadgen.Timeout)
	r.Losses = append(r.Losses, late.Losses...)
	events := []probes.Event{
		{At: t0.Add(2 * time.Second), Kind: probes.PodDeleting, Pod: "old", Detail: "grace 30s"},
		{At: t0.Add(2100 * time.Millisecond), Kind: probes.ContainerTerminated, Pod: "old", Detail: "app exited 0 (Completed)"},
		{At: t0.Add(2300 * time.Millisecond), Kind: probes.PodGone, Pod: "old"},
	}
	got := Advise(r, events)
	if len(got) != 2 {
		t.Fatalf("want two episodes, got %q", got)
	}
	if strings.Contains(got[0], "conntrack") || !strings.Contains(got[1], "kubernetes#101607") || !strings.Contains(got[1], "reused the source port") {
		t.Errorf("the late timeouts are stale conntrack entries, the first ones are not:\n%s", strings.Join(got, "\n"))
	}
}

// A timeout whose connection attempt went unanswered, with nothing in
// the rollout near it, is said to be the network's, not a shutdown's.
func TestAdviceSaysATimeoutNeverConnected(t *testing.T) {
	t0 := time.Now()
	r := lossesAt(t0, 30*time.Second, 1, loadgen.Timeout)
	r.Client.TimeoutMs = 2000
	r.Losses[0].NoConnection = true
	got := Advise(r, nil)
	if len(got) != 1 || !strings.Contains(got[0], "1 of the timeouts never connected: no answer to the connection attempt within 2s") || !strings.Contains(got[0], "lost on the way to the pods") {
		t.Errorf("advice %q", got)
	}
}

// Losses while no pod was ready name the gap and the fix (replicas, a
// PodDisruptionBudget); losses after a fault nodrop injected name it.
func TestAdviceNamesAGapAndAFault(t *testing.T) {
	t0 := time.Now()
	ev := func(at time.Duration, k probes.Kind, pod, detail string) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: k, Pod: pod, Detail: detail}
	}
	gap := Advise(lossesAt(t0, 7*time.Second, 50, loadgen.Timeout), []probes.Event{
		ev(time.Second, probes.EndpointReady, "only", ""),
		ev(1500*time.Millisecond, probes.FaultStart, "", "drain of a serving pod's node (node w1, 1 pod evicted)"),
		ev(6900*time.Millisecond, probes.EndpointNotReady, "only", ""),
		ev(13800*time.Millisecond, probes.EndpointReady, "next", ""),
	})
	if len(gap) != 1 || !strings.Contains(gap[0], "no pod was ready: the last ready one, only, left the endpoints at +6.9s") ||
		!strings.Contains(gap[0], "the next, next, turned ready at +13.8s") || !strings.Contains(gap[0], "PodDisruptionBudget") {
		t.Errorf("gap: %q", gap)
	}
	paused := Advise(lossesAt(t0, 3*time.Second, 50, loadgen.Timeout), []probes.Event{
		ev(time.Second, probes.EndpointReady, "a", ""),
		ev(time.Second, probes.EndpointReady, "b", ""),
		{At: t0.Add(2900 * time.Millisecond), Kind: probes.FaultStart, Pod: "a", Detail: "node paused 10s (node w1)",
			Why: "a frozen node's pods stay endpoints until the node is marked NotReady"},
		ev(12900*time.Millisecond, probes.FaultEnd, "a", "node paused 10s"),
	})
	if len(paused) != 1 || !strings.Contains(paused[0], "after the fault nodrop injected (node paused 10s (node w1))") || !strings.Contains(paused[0], "marked NotReady") {
		t.Errorf("paused: %q", paused)
	}
}

// A lone connection attempt nobody answered, within 10 s of a pod's
// refusals, is a refused connection's conntrack entry reused: it is said
// so, and no timing claim is held against it.
func TestAdviceNamesAReusedRefusedEntry(t *testing.T) {
	t0 := time.Now()
	r := lossesAt(t0, 4*time.Second, 50, loadgen.Refused)
	late := lossesAt(t0, 12*time.Second, 1, loadgen.Timeout)
	late.Losses[0].NoConnection = true
	r.Losses = append(r.Losses, late.Losses...)
	got := Advise(r, nil)
	if len(got) != 2 || !strings.Contains(got[1], "reused the source port of a refused connection") {
		t.Fatalf("advice %q", got)
	}
	if st := staleConntrack(probes.Episodes(probes.Bursts(r, nil), EpisodeGap)); !st[1].Refused || st[0].Refused {
		t.Errorf("stale %+v", st)
	}
	// 11 s after the refusals, past the entry's 10 s, it is not.
	later := lossesAt(t0, 4*time.Second, 50, loadgen.Refused)
	l := lossesAt(t0, 15100*time.Millisecond, 1, loadgen.Timeout)
	l.Losses[0].NoConnection = true
	later.Losses = append(later.Losses, l.Losses...)
	if st := staleConntrack(probes.Episodes(probes.Bursts(later, nil), EpisodeGap)); !st[1].After.IsZero() {
		t.Errorf("an attempt 11 s after the refusals counted as a reused entry: %+v", st)
	}
}

// A lone unanswered connection attempt while the deleted pod was still
// running is not blamed on its shutdown: the advice says so, and where
// the node's conntrack table says the attempt went.
func TestAdviceDoesNotBlameAPodStillRunning(t *testing.T) {
	t0 := time.Now()
	r := lossesAt(t0, 11800*time.Millisecond, 1, loadgen.Timeout)
	r.Client.TimeoutMs = 2000
	r.Losses[0].NoConnection = true
	got := Advise(r, []probes.Event{
		{At: t0.Add(9 * time.Second), Kind: probes.PodDeleting, Pod: "old"},
		{At: t0.Add(14700 * time.Millisecond), Kind: probes.ContainerTerminated, Pod: "old", Detail: "exit 0"},
		{At: t0.Add(11800 * time.Millisecond), Kind: probes.Conntrack, Detail: "unanswered attempt from client port 41000: sent to 10.244.0.9 (no pod of this run), entry SYN_SENT unreplied"},
	})
	if len(got) != 1 || strings.Contains(got[0], "stopped listening") || !strings.Contains(got[0], "before its container exited (5.7s after the deletion)") ||
		!strings.Contains(got[0], "lost on the way to the pods") || !strings.Contains(got[0], "sent to 10.244.0.9 (no pod of this run)") {
		t.Errorf("advice %q", got)
	}
}

// In a pod with a proxy in front of the app, the advice says which
// container stopped (or started) out of order, from the containers'
// own lifecycle lines.
func TestAdviceNamesTheSidecarOutOfOrder(t *testing.T) {
	t0 := time.Now()
	ev := func(at time.Duration, k probes.Kind, pod, detail string) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: k, Pod: pod, Detail: detail}
	}
	started := []probes.Event{
		ev(0, probes.ContainerStarted, "old", "app"),
		ev(0, probes.ContainerStarted, "old", "proxy"),
	}
	for _, tc := range []struct {
		name   string
		report *loadgen.Report
		events []probes.Event
		want   []string
	}{
		{
			name:   "the proxy has no preStop: it stops at deletion, the app waits",
			report: lossesAt(t0, 10200*time.Millisecond, 30, loadgen.Refused),
			events: append(started,
				ev(10*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(10050*time.Millisecond, probes.App, "old", "proxy: sigterm (signal=terminated component=proxy)"),
				ev(12100*time.Millisecond, probes.ContainerTerminated, "old", "proxy exited 0 (Completed)"),
				ev(15*time.Second, probes.App, "old", "app: sigterm (signal=terminated)"),
			),
			want: []string{"container proxy got SIGTERM at the deletion", "app, held by its preStop, still served", "native sidecar"},
		},
		{
			name:   "no preStop anywhere",
			report: lossesAt(t0, 10200*time.Millisecond, 30, loadgen.Refused),
			events: append(started,
				ev(10*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(10050*time.Millisecond, probes.App, "old", "proxy: sigterm (signal=terminated component=proxy)"),
				ev(10060*time.Millisecond, probes.App, "old", "app: sigterm (signal=terminated)"),
			),
			want: []string{"containers app and proxy all got SIGTERM at the deletion", "the one in front of the app"},
		},
		{
			name:   "the app exits first and the proxy answers for it",
			report: lossesAt(t0, 17500*time.Millisecond, 30, loadgen.HTTP5xx),
			events: append(started,
				ev(10*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(15*time.Second, probes.App, "old", "app: sigterm (signal=terminated)"),
				ev(17200*time.Millisecond, probes.ContainerTerminated, "old", "app exited 0 (Completed)"),
			),
			want: []string{"container app exited 7.2s after the deletion while container proxy still ran", "pass the app's Connection: close"},
		},
		{
			name:   "in a rollout: the old pod's proxy stops as a new pod turns ready",
			report: lossesAt(t0, 10100*time.Millisecond, 30, loadgen.Refused),
			events: append(started,
				ev(9900*time.Millisecond, probes.EndpointReady, "new", ""),
				ev(9950*time.Millisecond, probes.App, "old", "proxy: sigterm (signal=terminated component=proxy)"),
				ev(10*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(10*time.Second, probes.App, "old", "proxy: exit (code=0 component=proxy)"),
				ev(17200*time.Millisecond, probes.ContainerTerminated, "old", "proxy exited 0 (Completed)"),
			),
			want: []string{"container proxy got SIGTERM at the deletion"},
		},
		{
			name:   "a native sidecar answers 5xx for the app that exited, a second old pod deleted since",
			report: lossesAt(t0, 17100*time.Millisecond, 30, loadgen.HTTP5xx),
			events: append(started,
				ev(10*time.Second, probes.PodDeleting, "old", "grace 30s"),
				ev(15*time.Second, probes.App, "old", "app: sigterm (signal=terminated)"),
				ev(17*time.Second, probes.App, "old", "app: exit (code=0)"),
				ev(13*time.Second, probes.ContainerStarted, "old2", "app"),
				ev(13*time.Second, probes.ContainerStarted, "old2", "proxy"),
				ev(16*time.Second, probes.EndpointReady, "new2", ""),
				ev(16*time.Second, probes.PodDeleting, "old2", "grace 30s"),
			),
			want: []string{"container app exited 7.0s after the deletion while container proxy still ran"},
		},
		{
			name:   "the pod turns ready before its proxy listens",
			report: lossesAt(t0, 3100*time.Millisecond, 30, loadgen.Refused),
			events: []probes.Event{
				ev(0, probes.ContainerStarted, "new", "app"),
				ev(0, probes.ContainerStarted, "new", "proxy"),
				ev(2900*time.Millisecond, probes.App, "new", "app: ready"),
				ev(3*time.Second, probes.EndpointReady, "new", ""),
				ev(12*time.Second, probes.App, "new", "proxy: serving (component=proxy)"),
			},
			want: []string{"its container proxy did not serve yet (it began 9.0s after)", "readiness probe on its own port"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Advise(tc.report, tc.events)
			if len(got) != 1 {
				t.Fatalf("want one episode, got %q", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("advice lacks %q:\n%s", w, got[0])
				}
			}
		})
	}
}

// With the load sent from generator pods on several nodes, losses of one
// node's clients alone while that node had no ready pod (and another
// node had) name the node-local routing, not the pod's shutdown.
func TestAdviceNamesANodeWithNoReadyPod(t *testing.T) {
	t0 := time.Now()
	ev := func(at time.Duration, k probes.Kind, pod, detail string) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: k, Pod: pod, Detail: detail}
	}
	events := []probes.Event{
		ev(0, probes.PodScheduled, "old-a", "worker"),
		ev(0, probes.PodScheduled, "old-b", "worker2"),
		ev(time.Second, probes.EndpointReady, "old-a", ""),
		ev(time.Second, probes.EndpointReady, "old-b", ""),
		ev(2*time.Second, probes.PodDeleting, "old-a", "grace 30s"),
		ev(2100*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
		ev(9200*time.Millisecond, probes.ContainerTerminated, "old-a", "shop exited 0 (Completed)"),
		ev(9500*time.Millisecond, probes.PodScheduled, "new-a", "worker"),
		ev(11*time.Second, probes.EndpointReady, "new-a", ""),
	}
	gens := []loadgen.Share{{Name: "load-1 on worker", Node: "worker"}, {Name: "load-2 on worker2", Node: "worker2"}}
	from := func(names ...string) *loadgen.Report {
		r := &loadgen.Report{Started: t0, Generators: gens}
		r.Client.TimeoutMs = 1000
		for i, g := range names {
			r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(9*time.Second + time.Duration(i)*time.Millisecond), Class: loadgen.Timeout, NoConnection: true, Generator: g})
		}
		return r
	}
	got := Advise(from("load-1 on worker", "load-1 on worker"), events)
	for _, want := range []string{"lost only by the clients on worker (those on worker2 lost nothing)", "old-b on worker2 was", "the next there, new-a, turned ready at +11.0s", "internalTrafficPolicy: Local"} {
		if len(got) != 1 || !strings.Contains(got[0], want) {
			t.Errorf("one node's clients: want %q in %q", want, got)
		}
	}
	if got := Advise(from("load-1 on worker", "load-2 on worker2"), events); len(got) != 1 || strings.Contains(got[0], "internalTrafficPolicy") {
		t.Errorf("both nodes' clients lost: not node-local routing, got %q", got)
	}
}

// A rollout that replaces the pod of one node, then of another, loses
// the clients of each node in turn: the second episode's timeouts are
// other clients' (ports in another node's conntrack table), not the
// first one's followers, and each says so.
func TestAdviceTellsEachNodesEpisodeApart(t *testing.T) {
	t0 := time.Now()
	ev := func(at time.Duration, k probes.Kind, pod, detail string) probes.Event {
		return probes.Event{At: t0.Add(at), Kind: k, Pod: pod, Detail: detail}
	}
	events := []probes.Event{
		ev(0, probes.PodScheduled, "old-a", "worker"),
		ev(0, probes.PodScheduled, "old-b", "worker2"),
		ev(time.Second, probes.EndpointReady, "old-a", ""),
		ev(time.Second, probes.EndpointReady, "old-b", ""),
		ev(2*time.Second, probes.PodDeleting, "old-a", "grace 30s"),
		ev(2100*time.Millisecond, probes.EndpointTerminating, "old-a", ""),
		ev(9500*time.Millisecond, probes.PodScheduled, "new-a", "worker"),
		ev(11*time.Second, probes.EndpointReady, "new-a", ""),
		ev(12*time.Second, probes.PodDeleting, "old-b", "grace 30s"),
		ev(12100*time.Millisecond, probes.EndpointTerminating, "old-b", ""),
		ev(19500*time.Millisecond, probes.PodScheduled, "new-b", "worker2"),
		ev(21*time.Second, probes.EndpointReady, "new-b", ""),
	}
	r := &loadgen.Report{Started: t0, Generators: []loadgen.Share{{Name: "load-1 on worker", Node: "worker"}, {Name: "load-2 on worker2", Node: "worker2"}}}
	r.Client.TimeoutMs = 1000
	for i, l := range []struct {
		at  time.Duration
		gen string
	}{{9 * time.Second, "load-1 on worker"}, {9001 * time.Millisecond, "load-1 on worker"}, {19 * time.Second, "load-2 on worker2"}, {19001 * time.Millisecond, "load-2 on worker2"}} {
		r.Losses = append(r.Losses, loadgen.Loss{At: t0.Add(l.at), Class: loadgen.Timeout, NoConnection: true, Generator: l.gen, LocalPort: 40000 + i%2})
	}
	got := Advise(r, events)
	if len(got) != 2 || !strings.Contains(got[0], "lost only by the clients on worker (") || !strings.Contains(got[1], "lost only by the clients on worker2 (") {
		t.Errorf("advice %q; want each episode named by its node", got)
	}
}

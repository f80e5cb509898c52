package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nodrop-dev/nodrop/chaos/nfqueue"
	"github.com/nodrop-dev/nodrop/scenario"
)

// NodeNetns gives the network namespace of a node, where nodrop can hold
// the packets of a delay fault (on kind: its container's). scenario.Env.Nodes
// offers it where it can.
type NodeNetns interface {
	// Netns is the path of node's network namespace (/proc/PID/ns/net).
	Netns(ctx context.Context, node string) (string, error)
}

// delayQueue is the NFQUEUE number the delay fault binds on a node.
const delayQueue = 4711

// Delay holds every packet one serving pod (the oldest, mid-rollout an
// old one) sends for delay, give or take jitter (uniform; with jitter,
// packets overtake one another: reordering), for d: what netem on the
// pod's interface does, a slow or congested path from that pod. The
// kernels nodrop was built on have no sch_netem, so the packets go
// through an iptables NFQUEUE rule in the FORWARD chain of the pod's node
// to nodrop's own process, which lets each go when its time comes
// (package nfqueue), in a process of its own when scenario.Env names a
// HelperProgram. The rule passes packets through if nodrop is gone
// (--queue-bypass), and carries the comment Resume looks for. It needs
// root on the host.
//
// Only the packets the pod sends are held (NodeDelay: those its node
// sends out): a connection's first packet held
// in a queue has no conntrack entry yet (it is confirmed when the packet
// leaves), so a SYN the client sends again meanwhile is balanced anew and
// may reach another pod. Measured holding both ways for 1.5 s: about half
// the connections to the held pod escaped to the other one that way.
func Delay(delay, jitter, d time.Duration, at scenario.FaultAt) scenario.Fault {
	return delayed(delay, jitter, d, at, podPackets)
}

// NodeDelay is Delay on every packet the node of a serving pod sends out
// of its interface (its pods' answers to the load and to the rest of the
// cluster), as netem's delay on the node's interface would.
func NodeDelay(delay, jitter, d time.Duration, at scenario.FaultAt) scenario.Fault {
	return delayed(delay, jitter, d, at, nodePackets)
}

func delayed(delay, jitter, d time.Duration, at scenario.FaultAt, whose packets) scenario.Fault {
	name := fmt.Sprintf("%s packets delayed %s", whose, delay)
	if jitter > 0 {
		name += fmt.Sprintf(" ±%s", jitter)
	}
	return scenario.Fault{
		Name: name + fmt.Sprintf(" for %s", d), At: at, For: d, NeedsNodes: true, Mechanism: packetsDelayed,
		Inject: func(ctx context.Context, l *scenario.Live) (scenario.Injected, error) {
			netns, ok := l.Env.Nodes.(NodeNetns)
			if !ok {
				return scenario.Injected{}, fmt.Errorf("%w: delay needs the nodes' network namespaces (a kind cluster)", scenario.ErrBadInput)
			}
			t, err := whose.pick(ctx, l)
			if err != nil {
				return scenario.Injected{}, err
			}
			path, err := netns.Netns(ctx, t.node)
			if err != nil {
				return scenario.Injected{}, err
			}
			var q io.Closer
			if l.Env.HelperProgram != "" {
				q, err = nfqueue.Spawn(ctx, l.Env.HelperProgram, path, delayQueue, delay, jitter)
			} else {
				q, err = nfqueue.Start(path, delayQueue, delay, jitter)
			}
			if err != nil {
				return scenario.Injected{}, fmt.Errorf("holding packets on %s (nodrop needs root for it): %w", t.node, err)
			}
			unrule, err := forwardRules(ctx, l.Env.Nodes, t.node, fmt.Sprintf("%s -j NFQUEUE --queue-num %d --queue-bypass", t.out, delayQueue))
			if err != nil {
				return scenario.Injected{}, errors.Join(fmt.Errorf("delaying %s packets: %w", whose, err), q.Close())
			}
			undo := func(ctx context.Context) error {
				return errors.Join(unrule(ctx), q.Close())
			}
			return scenario.Injected{Pod: t.pod, On: t.on, Undo: undo}, nil
		},
	}
}

// parseDelay reads delay's value: DELAY[:JITTER][/DURATION], the delay
// from 1ms to 10s, the jitter at most the delay, the duration
// DefaultPause unless given.
func parseDelay(arg string) (delay, jitter, d time.Duration, err error) {
	bad := fmt.Errorf("%w: delay=%s: want how long each packet is held, a jitter after a colon, and for how long after a slash, e.g. delay=100ms:50ms/10s", ErrBadFault, arg)
	spec, dur, hasDur := strings.Cut(arg, "/")
	ds, js, hasJitter := strings.Cut(spec, ":")
	if delay, err = time.ParseDuration(ds); err != nil || delay < time.Millisecond || delay > 10*time.Second {
		return 0, 0, 0, bad
	}
	if hasJitter {
		if jitter, err = time.ParseDuration(js); err != nil || jitter < 0 || jitter > delay {
			return 0, 0, 0, bad
		}
	}
	d, ok := lasting(dur, hasDur, DefaultPause)
	if !ok {
		return 0, 0, 0, bad
	}
	return delay, jitter, d, nil
}

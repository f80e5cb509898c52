package nfqueue_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodrop-dev/nodrop/chaos/nfqueue"
)

// In a network namespace of its own, a TCP handshake over loopback
// whose packets are held 100 ms each takes at least 200 ms (the SYN and
// the SYN-ACK held), and well under that once the rule is gone. It needs
// root and iptables (CI's machine has both: Docker brings iptables).
//
// The same with the delayer in a process of its own (Spawn: this test
// binary re-executed, TestMain calling Helper).
func TestDelayHoldsEveryPacket(t *testing.T) {
	t.Run("in this process", func(t *testing.T) {
		testDelay(t, func(netns string) (io.Closer, error) {
			return nfqueue.Start(netns, 4711, 100*time.Millisecond, 0)
		})
	})
	t.Run("in a process of its own", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		testDelay(t, func(netns string) (io.Closer, error) {
			return nfqueue.Spawn(context.Background(), self, netns, 4711, 100*time.Millisecond, 0)
		})
	})
}

func TestMain(m *testing.M) {
	if code, ok := nfqueue.Helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// A program that does not call Helper first is not taken for the
// delayer: Spawn stops it and says so.
func TestSpawnRefusesAnotherProgram(t *testing.T) {
	start := time.Now()
	_, err := nfqueue.Spawn(context.Background(), "/bin/echo", "", 4711, time.Millisecond, 0)
	if err == nil || !strings.Contains(err.Error(), "did not start") {
		t.Fatalf("Spawn(/bin/echo) = %v; want an error saying it did not start", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Spawn took %s to give up", time.Since(start))
	}
}

func testDelay(t *testing.T, start func(netns string) (io.Closer, error)) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace and an iptables rule")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	type result struct {
		held, free time.Duration
		err        error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread moves to a new network namespace and is never used
		// again: the runtime ends it when the goroutine returns locked.
		runtime.LockOSThread()
		r := result{}
		r.held, r.free, r.err = inNewNetns(start)
		ch <- r
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("handshake: %s held, %s free", r.held, r.free)
	if r.held < 200*time.Millisecond || r.free > 100*time.Millisecond {
		t.Errorf("handshake took %s held and %s free; want ≥ 200 ms held, < 100 ms free", r.held, r.free)
	}
}

func inNewNetns(start func(netns string) (io.Closer, error)) (held, free time.Duration, err error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return 0, 0, fmt.Errorf("unshare: %w", err)
	}
	run := func(args ...string) error {
		// Started from this locked thread, the command shares its
		// namespace.
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w: %s", args, err, out)
		}
		return nil
	}
	if err := run("ip", "link", "set", "lo", "up"); err != nil {
		return 0, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	dial := func() (time.Duration, error) {
		start := time.Now()
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.Close()
		return time.Since(start), nil
	}
	d, err := start(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
	if err != nil {
		return 0, 0, err
	}
	rule := []string{"OUTPUT", "-p", "tcp", "--dport", port, "-j", "NFQUEUE", "--queue-num", "4711", "--queue-bypass"}
	if err := run(append([]string{"iptables", "-I"}, rule...)...); err != nil {
		d.Close()
		return 0, 0, err
	}
	// The SYN to the port is held; the SYN-ACK comes from it, so hold the
	// other way too.
	back := []string{"OUTPUT", "-p", "tcp", "--sport", port, "-j", "NFQUEUE", "--queue-num", "4711", "--queue-bypass"}
	if err := run(append([]string{"iptables", "-I"}, back...)...); err != nil {
		d.Close()
		return 0, 0, err
	}
	held, err = dial()
	if err != nil {
		d.Close()
		return 0, 0, err
	}
	if err := run(append([]string{"iptables", "-D"}, rule...)...); err != nil {
		return 0, 0, err
	}
	if err := run(append([]string{"iptables", "-D"}, back...)...); err != nil {
		return 0, 0, err
	}
	if err := d.Close(); err != nil {
		return 0, 0, err
	}
	free, err = dial()
	return held, free, err
}

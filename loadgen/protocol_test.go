package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// lineConn is a protocol written for this test alone, in the shape a
// new protocol takes: one request is a line with its number, its answer
// a line "pod version". It shows that a protocol is its wireConn and an
// entry in protocols, nothing else.
type lineConn struct {
	conn   net.Conn
	br     *bufio.Reader
	stats  *connStats
	broken bool
}

func (c *lineConn) send(o *outcome) error {
	o.onConnAt = time.Now()
	c.conn.SetDeadline(time.Now().Add(time.Second))
	_, err := fmt.Fprintf(c.conn, "%d\n", o.seq)
	var line string
	if err == nil {
		line, err = c.br.ReadString('\n')
	}
	o.latency = time.Since(o.at)
	if err != nil {
		o.err, o.class, o.failedAt = err, Classify(err, 0), time.Now()
		c.stats.broken.Add(1)
		c.close()
		return nil
	}
	o.firstByte = true
	o.pod, o.version, _ = strings.Cut(strings.TrimSpace(line), " ")
	return nil
}

func (c *lineConn) usable() bool { return !c.broken }
func (c *lineConn) close()       { c.broken = true; c.conn.Close() }

func TestAProtocolIsOneTableEntry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "p1 v1\n")
				}
			}()
		}
	}()
	line := protocol{name: "line", scheme: "line", open: func(target string, cfg Config, stats *connStats) (wireConn, error) {
		c, err := dialTCP(target, cfg.Timeout)
		if err != nil {
			return nil, err
		}
		return &lineConn{conn: c, br: bufio.NewReader(c), stats: stats}, nil
	}}
	saved := protocols
	protocols = append(append([]protocol{}, protocols...), line)
	t.Cleanup(func() { protocols = saved })

	r, err := Run(context.Background(), Config{Targets: []string{"line://" + ln.Addr().String()}, Connections: 2, Rate: 100, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Protocol != "line" || r.Lost != 0 || r.Total < 95 || r.ByPod["p1"] != r.Total || r.ByVersion["v1"] != r.Total {
		t.Errorf("protocol %q: %s, by pod %v", r.Protocol, r.Summary(), r.ByPod)
	}
	if _, err := (Config{Targets: []string{"line://" + ln.Addr().String()}}).Normalize(); err == nil || !strings.Contains(err.Error(), "line targets need long-lived mode") {
		t.Errorf("paced line load: %v", err)
	}
}

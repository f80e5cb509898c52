package images_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/loadgen"
)

// nginx's binary upgrade (USR2, WINCH, QUIT) and its wrong alternatives
// in a container, under fresh-connection load from the host to the
// container's bridge address.
func TestNginxBinaryUpgradeInAContainer(t *testing.T) {
	refs := buildAll(t)
	for _, tc := range []struct {
		name, variant string
		command       []string
		exitCode      int  // of the command
		survives      bool // the container is still running after it
		upgraded      bool // v2 answers after it
	}{
		{"daemonized under nodrop's init, USR2+WINCH+QUIT is lossless", "nginx-init", []string{"nginx-upgrade", "v2"}, 0, true, true},
		{"as PID 1, nginx ignores USR2", "nginx-pid1", []string{"nginx-upgrade", "v2"}, 3, true, false},
		{"under tini, nginx ignores USR2", "nginx-tini", []string{"nginx-upgrade", "v2"}, 3, true, false},
		{"as PID 1, quitting stops the container", "nginx-pid1", []string{"nginx", "-c", "/etc/nginx/nodrop.conf", "-s", "quit"}, 0, false, false},
		{"nginx -s stop stops the container", "nginx-init", []string{"nginx", "-c", "/etc/nginx/nodrop.conf", "-s", "stop"}, 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, url := runNginx(t, refs[tc.variant])

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			reports := make(chan *loadgen.Report, 1)
			go func() {
				r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Rate: 500, DisableKeepAlive: true, Timeout: time.Second})
				if err != nil {
					t.Error(err)
				}
				reports <- r
			}()
			time.Sleep(500 * time.Millisecond) // load before the command
			out, err := exec.Command("docker", append([]string{"exec", name}, tc.command...)...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // and after it
			cancel()
			r := <-reports
			running := strings.TrimSpace(output(t, "docker", "inspect", "-f", "{{.State.Running}}", name)) == "true"
			t.Logf("%s: %s, by version %v; container running after: %v; %v exit %d:\n%s", tc.variant, r.Summary(), r.ByVersion, running, tc.command, code, out)
			// A command that stops the container may be cut off with it
			// once it has sent its signal: its exit status is then the
			// exec's, not nginx's, and what counts is that it was sent.
			signalled := !tc.survives && strings.Contains(string(out), "signal process started")
			if (code != tc.exitCode && !signalled) || running != tc.survives || (r.ByVersion["v2"] > 0) != tc.upgraded {
				t.Fatalf("want exit %d, running %v, upgraded %v", tc.exitCode, tc.survives, tc.upgraded)
			}
			if tc.survives && !r.Lossless() {
				t.Fatalf("want 0 lost: %s", r.Summary())
			}
			if !tc.survives && r.Lost == 0 {
				t.Fatalf("want requests lost with the container: %s", r.Summary())
			}
		})
	}
}

// nginx's graceful worker shutdown (WINCH, QUIT) closes idle kept-alive
// connections at once, without a Connection: close: a client that sends
// on one at that moment loses the request. Long-lived clients, which send
// on every connection all the time, lose one request per connection; new
// connections lose nothing (above).
func TestNginxUpgradeClosesIdleKeptAliveConnections(t *testing.T) {
	refs := buildAll(t)
	name, url := runNginx(t, refs["nginx-init"])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan *loadgen.Report, 1)
	go func() {
		r, err := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Rate: 500, Connections: 10, Timeout: time.Second})
		if err != nil {
			t.Error(err)
		}
		reports <- r
	}()
	time.Sleep(500 * time.Millisecond)
	if out, err := exec.Command("docker", "exec", name, "nginx-upgrade", "v2").CombinedOutput(); err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	r := <-reports
	t.Logf("%s; idle-close races %d, broken connections %d, by version %v", r.Summary(), r.IdleCloseRace, r.BrokenConnections, r.ByVersion)
	// Every connection is closed while idle; a client that looks at its
	// connection before reusing it (as nodrop's and net/http's do) moves
	// on. Only a request already on its way when the close lands is lost:
	// the idle-close race, at most one per connection.
	if r.Reconnects+r.Lost < 10 || r.Lost > 10 || r.IdleCloseRace != r.Lost || r.ByVersion["v2"] == 0 {
		t.Fatalf("want every connection closed (reconnects %d + lost %d ≥ 10), any loss an idle-close race, then v2: %s", r.Reconnects, r.Lost, r.Summary())
	}
}

// runNginx starts a container of ref, removed at the end of the test, and
// returns its name and URL on the Docker bridge once it serves.
func runNginx(t *testing.T, ref string) (name, url string) {
	t.Helper()
	name = fmt.Sprintf("nodrop-nginx-test-%d", time.Now().UnixNano())
	if out, err := exec.Command("docker", "run", "-d", "--name", name, ref).CombinedOutput(); err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	ip := strings.TrimSpace(output(t, "docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name))
	url = "http://" + ip + ":8080/"
	waitServing(t, url)
	return name, url
}

func waitServing(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		// One request answered is all "serving" means; a run this short is
		// no verdict (the delivered-load rule needs more than one request).
		r, err := loadgen.Run(context.Background(), loadgen.Config{Targets: []string{url}, Rate: 10, Duration: 100 * time.Millisecond})
		if err == nil && r.Total > 0 && r.Lost == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not serving after 20 s", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

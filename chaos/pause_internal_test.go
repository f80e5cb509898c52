package chaos

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodrop-dev/nodrop/scenario"
)

// localShell runs each script here, as the one node.
type localShell struct{}

func (localShell) Nodes(context.Context) ([]string, error) { return []string{"here"}, nil }
func (localShell) Run(ctx context.Context, _, script string) (string, error) {
	out, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// state is a process's state letter (T: stopped).
func state(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))[0]
}

// A child the paused process forked as SIGSTOP was sent can take it
// after its exec, under its new name (kube-proxy's iptables-restore):
// the pause's undo resumes it too, and so does Resume. Real processes: a
// shell named like the paused process, its child a sleep stopped as the
// race leaves it.
func TestPauseResumesAChildStoppedUnderItsNewName(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	const name = "nodrop-pausetst" // 15 bytes: the kernel keeps it whole
	parent := filepath.Join(t.TempDir(), name)
	raw, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(parent, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, resume := range []string{"undo", "Resume"} {
		// Resume's script runs in a fresh shell here, as on a node
		// after a run was killed.
		t.Run(resume, func(t *testing.T) {
			cmd := exec.Command(parent, "-c", "sleep 30 & wait")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				cmd.Process.Kill()
				cmd.Wait()
			})
			var child int
			for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				out, _ := exec.Command("pgrep", "-P", strconv.Itoa(cmd.Process.Pid)).Output()
				child, _ = strconv.Atoi(strings.TrimSpace(string(out)))
			}
			if child == 0 {
				t.Fatal("the shell started no child")
			}
			t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
			ctx := context.Background()
			in, err := pause(name, "test pause", "", time.Second, DefaultAt).Inject(ctx, &scenario.Live{Env: scenario.Env{Nodes: localShell{}}})
			if err != nil {
				t.Fatal(err)
			}
			// The race: the child took SIGSTOP after its exec.
			if err := syscall.Kill(child, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(2 * time.Second); state(t, child) != "T" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			}
			if resume == "undo" {
				err = in.Undo(ctx)
			} else {
				var out string
				out, err = localShell{}.Run(ctx, "here", stoppedScript([]string{name}))
				// The process and its stopped child, each by the name
				// Resume reports (once: it drops the repeat).
				if lines := strings.Fields(out); len(lines) != 2 || lines[0] != name || lines[1] != name {
					t.Errorf("Resume's script said %q; want %s for the process and its child", out, name)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(2 * time.Second); (state(t, child) == "T" || state(t, cmd.Process.Pid) == "T") && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			}
			if p, c := state(t, cmd.Process.Pid), state(t, child); p == "T" || c == "T" {
				t.Errorf("after %s: the paused process is %s, its child %s; want neither stopped", resume, p, c)
			}
		})
	}
}

package chaos

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// scripts is a NodeShell that records scripts and fails those holding
// failOn.
type scripts struct {
	ran    []string
	failOn string
}

func (s *scripts) Nodes(context.Context) ([]string, error) { return []string{"n"}, nil }
func (s *scripts) Run(_ context.Context, node, script string) (string, error) {
	s.ran = append(s.ran, script)
	if s.failOn != "" && strings.Contains(script, s.failOn) {
		return "", errors.New("no such target")
	}
	return "", nil
}

// The rules go first in FORWARD with nodrop's comment, all or none, and
// their undo deletes each.
func TestForwardRules(t *testing.T) {
	s := &scripts{}
	undo, err := forwardRules(context.Background(), s, "n", "-d 10.0.0.7 -j DROP", "-s 10.0.0.7 -j NFQUEUE --queue-num 1")
	if err != nil {
		t.Fatal(err)
	}
	want := "iptables -I FORWARD -d 10.0.0.7 -m comment --comment nodrop-fault -j DROP && iptables -I FORWARD -s 10.0.0.7 -m comment --comment nodrop-fault -j NFQUEUE --queue-num 1"
	if s.ran[0] != want {
		t.Errorf("added with %q, want %q", s.ran[0], want)
	}
	if err := undo(context.Background()); err != nil || !strings.HasPrefix(s.ran[1], "iptables -D FORWARD -d 10.0.0.7 -m comment --comment nodrop-fault -j DROP; iptables -D") {
		t.Errorf("undone with %q, %v", s.ran[1], err)
	}
	failing := &scripts{failOn: "-I"}
	if _, err := forwardRules(context.Background(), failing, "n", "-d 10.0.0.7 -j DROP"); err == nil || len(failing.ran) != 2 || !strings.Contains(failing.ran[1], "-D") {
		t.Errorf("a rule that cannot be added: %v, ran %q; want an error and the rules deleted", err, failing.ran)
	}
}

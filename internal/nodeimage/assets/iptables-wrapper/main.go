// Command iptables-wrapper picks the iptables backend (legacy or nft) that
// the node already uses, by which has more rules (a tie goes to legacy, as
// in kind's node entrypoint), remembers the choice, and runs the matching
// xtables-<mode>-multi under the name it was called by.
package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const choiceFile = "/tmp/.iptables-mode"

func rules(multi string) int {
	n := 0
	for _, save := range []string{"iptables-save", "ip6tables-save"} {
		out, _ := exec.Command(multi, save).Output()
		for _, l := range bytes.Split(out, []byte("\n")) {
			if bytes.HasPrefix(l, []byte("-")) {
				n++
			}
		}
	}
	return n
}

func main() {
	raw, _ := os.ReadFile(choiceFile)
	mode := strings.TrimSpace(string(raw))
	if mode != "legacy" && mode != "nft" {
		mode = "nft"
		if rules("/usr/sbin/xtables-legacy-multi") >= rules("/usr/sbin/xtables-nft-multi") {
			mode = "legacy"
		}
		os.WriteFile(choiceFile, []byte(mode+"\n"), 0o644)
	}
	name := filepath.Base(os.Args[0])
	for _, suffix := range []string{"-nft", "-legacy"} {
		name = strings.TrimSuffix(name, suffix)
		name = strings.Replace(name, suffix+"-", "-", 1)
	}
	err := syscall.Exec("/usr/sbin/xtables-"+mode+"-multi", append([]string{name}, os.Args[1:]...), os.Environ())
	os.Stderr.WriteString("iptables-wrapper: " + err.Error() + "\n")
	os.Exit(1)
}

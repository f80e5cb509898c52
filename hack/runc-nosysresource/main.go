// Command runc-nosysresource is a Docker runtime that removes
// CAP_SYS_RESOURCE from a container's capabilities and then runs the real
// runc.
//
// Some hosts (Firecracker VMs among them) drop CAP_SYS_RESOURCE from every
// process's capability bounding set, even root's. Docker gives a
// --privileged container every capability the kernel knows, runc cannot
// grant one outside its own bounding set, and every kind node (always
// --privileged) fails with "unable to apply caps: operation not
// permitted". hack/ensure-docker.sh registers this program as Docker's
// default runtime only on such hosts.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

const realRunc = "/usr/sbin/runc"

func main() {
	if err := stripFromSpec(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "runc-nosysresource:", err)
		os.Exit(1)
	}
	err := syscall.Exec(realRunc, append([]string{realRunc}, os.Args[1:]...), os.Environ())
	fmt.Fprintln(os.Stderr, "runc-nosysresource: exec", realRunc+":", err)
	os.Exit(1)
}

// stripFromSpec edits the OCI bundle's config.json (create, run) or the
// process spec (exec) in place.
func stripFromSpec(args []string) error {
	sub, bundle, process := "", ".", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case sub == "" && (a == "create" || a == "run" || a == "exec"):
			sub = a
		case a == "--bundle" || a == "-b":
			bundle = next()
		case len(a) > 9 && a[:9] == "--bundle=":
			bundle = a[9:]
		case a == "--process" || a == "-p":
			process = next()
		case len(a) > 10 && a[:10] == "--process=":
			process = a[10:]
		}
	}
	switch {
	case sub == "create" || sub == "run":
		return editJSON(filepath.Join(bundle, "config.json"), func(spec map[string]any) {
			if p, ok := spec["process"].(map[string]any); ok {
				stripCaps(p)
			}
		})
	case sub == "exec" && process != "":
		return editJSON(process, stripCaps)
	}
	return nil
}

// stripCaps removes CAP_SYS_RESOURCE from every capability set of an OCI
// process object.
func stripCaps(process map[string]any) {
	caps, ok := process["capabilities"].(map[string]any)
	if !ok {
		return
	}
	for set, v := range caps {
		list, ok := v.([]any)
		if !ok {
			continue
		}
		kept := list[:0]
		for _, c := range list {
			if c != "CAP_SYS_RESOURCE" {
				kept = append(kept, c)
			}
		}
		caps[set] = kept
	}
}

func editJSON(path string, edit func(map[string]any)) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	if !bytes.Contains(raw, []byte("CAP_SYS_RESOURCE")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep 64-bit values such as rlimits exact
	var spec map[string]any
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	edit(spec)
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	tmp := path + ".nodrop-tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

package main

import (
	"context"
	"os/exec"
	"strings"
	"time"
)

// requireDocker checks that a Docker engine answers, with an error that
// names the fix.
func requireDocker(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return usagef("no docker command on PATH; install Docker (on Debian: hack/ensure-docker.sh, or apt-get install docker.io)")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndex(msg, "\n"); i >= 0 {
			msg = msg[i+1:]
		}
		return usagef("no Docker engine answers (%s); start one: hack/ensure-docker.sh installs and starts dockerd", msg)
	}
	return nil
}

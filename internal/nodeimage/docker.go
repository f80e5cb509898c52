package nodeimage

import (
	"context"
	"io"
	"os/exec"

	"github.com/nodrop-dev/nodrop/internal/progress"
)

// docker runs the docker CLI, as kind itself does.
type docker struct{ log *progress.Logger }

func (d docker) cmd(stdin io.Reader, args ...string) *exec.Cmd {
	c := exec.Command("docker", args...)
	c.Stdin = stdin
	return c
}

func (d docker) run(ctx context.Context, args ...string) error {
	return d.log.Run(ctx, d.cmd(nil, args...))
}

func (d docker) output(ctx context.Context, args ...string) ([]byte, error) {
	return d.log.Output(ctx, d.cmd(nil, args...))
}

func (d docker) imageExists(ctx context.Context, ref string) bool {
	return exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", ref).Run() == nil
}

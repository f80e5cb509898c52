package images

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/nodrop-dev/nodrop/internal/cachedir"
	"github.com/nodrop-dev/nodrop/internal/progress"
)

// GeneratorRepo is the repository of the load generator's image.
const GeneratorRepo = "nodrop/generator"

// generatorDockerfile puts the program on the Debian base, which has the
// C library a program built with cgo links to; it runs as nobody.
const generatorDockerfile = `ARG BASE
FROM ${BASE}
COPY nodrop /nodrop
USER 65534:65534
ENTRYPOINT ["/nodrop"]
`

// Generator builds the image of nodrop's load generator offline with the
// local Docker engine and returns its reference: program (nodrop's own
// binary, or the suites' test binary; both run as a generator when
// started with internal/generator's HelperArg) on the Debian base. It is
// tagged by a hash of the program and the base, so the same program is
// built once.
func Generator(ctx context.Context, program, cacheDir string, log *progress.Logger) (string, error) {
	base, err := EnsureBase(ctx, cacheDir, "", log)
	if err != nil {
		return "", err
	}
	sum, err := cachedir.FileHash(program)
	if err != nil {
		return "", fmt.Errorf("the generator's program: %w", err)
	}
	ref := fmt.Sprintf("%s:%s", GeneratorRepo, hashString(sum + generatorDockerfile + base)[:12])
	if exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run() == nil {
		return ref, nil
	}
	step := log.Start("building image %s (the load generator)", ref)
	dir := filepath.Join(cacheDir, "image-contexts", "generator")
	if err := os.RemoveAll(dir); err != nil {
		return "", step.Fail(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", step.Fail(err)
	}
	defer os.RemoveAll(dir)
	if err := linkOrCopy(program, filepath.Join(dir, "nodrop")); err != nil {
		return "", step.Fail(fmt.Errorf("the generator's program: %w", err))
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(generatorDockerfile), 0o644); err != nil {
		return "", step.Fail(err)
	}
	cmd := exec.Command("docker", "build", "-q", "--build-arg", "BASE="+base, "-t", ref, dir)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if err := log.Run(ctx, cmd); err != nil {
		return "", step.Fail(err)
	}
	step.Done()
	return ref, nil
}

// linkOrCopy puts src's bytes at dst, executable: a hard link where both
// are on one file system, a copy otherwise.
func linkOrCopy(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

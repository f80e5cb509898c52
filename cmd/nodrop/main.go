// Command nodrop drives load through rolling updates and hot upgrades on
// Kubernetes and says exactly which requests were lost, and why.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nodrop-dev/nodrop/chaos/nfqueue"
	"github.com/nodrop-dev/nodrop/cluster"
	"github.com/nodrop-dev/nodrop/internal/generator"
	"github.com/nodrop-dev/nodrop/internal/witness"
)

// Exit codes shared by every subcommand.
const (
	exitOK       = 0
	exitLost     = 1 // the run worked and requests were lost (or a check failed)
	exitBadInput = 2 // bad flags, config or environment; nothing was judged
	// exitNotJudged: the run could not be judged (load not delivered,
	// calibration failed, interrupted): a harness failure, never a pass.
	exitNotJudged = 3
)

// usageError is bad input from the user: printed as one line, exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// notJudgedUnlessBadInput is how a command reports an error that stopped
// it before any verdict: bad input stays bad input (exit 2), anything
// else (a cluster that could not be reached or brought up) is not judged
// (exit 3).
func notJudgedUnlessBadInput(err error) error {
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	return exitError{code: exitNotJudged, msg: "not judged: " + err.Error()}
}

// exitError carries a non-zero exit code for a run that completed.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func main() {
	if code, ok := helper(os.Args[1:]); ok {
		os.Exit(code)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// helper runs this binary as one of nodrop's helper processes when its
// arguments ask for one, and returns the helper's exit code and true.
func helper(args []string) (int, bool) {
	if code, ok := nfqueue.Helper(args); ok {
		return code, true // this process holds a delay fault's packets (scenario.Env.HelperProgram)
	}
	if code, ok := witness.Helper(args); ok {
		return code, true // this process watches the machine beside the load generator (scenario.Env.Witness)
	}
	if code, ok := cluster.CreateHelper(args); ok {
		return code, true // this process creates a kind cluster on its own network (cluster.Options.Program)
	}
	if code, ok := generator.Helper(args); ok {
		return code, true // this process is a load generator in a pod of the cluster (incluster)
	}
	return 0, false
}

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "nodrop:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "nodrop:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitBadInput
	}
	return exitLost
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "nodrop",
		Short:         "Prove that rolling updates and hot upgrades lose no requests",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newCheckCommand(), newLintCommand(), newLoadCommand(), newImagesCommand(), newNodeImageCommand(), newClusterCommand(), newVariantsCommand(), newRenderCommand(), newBenchCommand(), newVersionCommand())
	strictArgs(root)
	return root
}

// strictArgs makes every wrong word bad input (exit 2, one line): an
// unknown command or subcommand, or arguments a command does not take.
func strictArgs(c *cobra.Command) {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
	// A group of commands (cluster, images) only names its subcommands;
	// a command that runs and also has subcommands (bench, bench diff)
	// takes its own arguments as a leaf does.
	if c.HasSubCommands() && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			var names []string
			for _, sub := range cmd.Commands() {
				if sub.IsAvailableCommand() {
					names = append(names, sub.Name())
				}
			}
			return usagef("unknown command %q for %q; commands: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		}
		return
	}
	validate := c.Args
	if validate == nil {
		validate = cobra.NoArgs
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if err := validate(cmd, args); err != nil {
			var ue usageError
			if errors.As(err, &ue) {
				return err
			}
			return usageError{err}
		}
		return nil
	}
}

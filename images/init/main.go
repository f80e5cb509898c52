// Command init is a PID 1 for containers whose main process may be
// replaced in place: it runs its command, adopts and reaps every orphan,
// forwards signals to its children (whichever processes they are now),
// and exits only when no process is left.
//
// tini and dumb-init exit as soon as their first child exits. That is
// right for one long-running process and wrong for an nginx binary
// upgrade, which needs nginx to daemonize (nginx ignores USR2 while its
// parent is the one it started under, so under a plain init or as PID 1
// it cannot upgrade at all): the launching process exits at once, the
// master lives on as an orphan, and after USR2 and QUIT the new master
// is an orphan too. This init keeps the container alive through all of it.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (linux/prctl.h):
// the standard library has the syscall, not the constant, and the image
// programs build from the standard library alone.
const prSetChildSubreaper = 36

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "init: usage: init COMMAND [ARG...]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1:]))
}

func run(argv []string) int {
	// Orphans of the command's tree come to this process also when it is
	// not PID 1 (tests, or under another init).
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "init: becoming a subreaper:", errno)
		return 1
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 127
	}
	go func() {
		for s := range sigs {
			for _, pid := range children() {
				syscall.Kill(pid, s.(syscall.Signal))
			}
		}
	}()
	code := 0
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.ECHILD) {
			return code
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "init: wait:", err)
			return 1
		}
		// The container's exit code is the last process's.
		switch {
		case ws.Exited():
			code = ws.ExitStatus()
		case ws.Signaled():
			code = 128 + int(ws.Signal())
		}
	}
}

// children lists the processes whose parent is this one: the command, or
// the orphans it left (an nginx master after daemonizing or upgrading).
func children() []int {
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may contain spaces and parentheses.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) > 1 && fields[1] == strconv.Itoa(self) {
			pids = append(pids, pid)
		}
	}
	return pids
}

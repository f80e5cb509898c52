// Package sched asks the kernel to let nodrop's load generator ahead of
// the kind cluster it judges on the same machine. Call it from a main or
// a TestMain: it changes how the whole process (and its session) is
// scheduled.
package sched

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// GeneratorNice is the nice value nodrop asks for while it sends load.
const GeneratorNice = -5

// Applied says what PreferLoadGenerator changed.
type Applied struct {
	// Threads of this process given GeneratorNice.
	Threads int
	// Autogroup: the session's autogroup was given GeneratorNice.
	Autogroup bool
}

// PreferLoadGenerator gives this process GeneratorNice, where it may
// (root, or CAP_SYS_NICE), so that a kind cluster sharing the cores does
// not hold the load generator back when a pod's deletion sets off the
// kubelet, containerd, kube-proxy and the API server at once. It never
// lowers a priority already higher.
//
// Two things have to change for that, and a nice value alone changes
// neither. Linux keeps a nice value per thread, and Go has started
// several threads before main runs, so every thread is set (threads
// made later inherit from the thread that makes them). And where the
// kernel groups processes by session (sched_autogroup_enabled, on by
// default in Debian's kernels and most distributions'), a nice value
// counts only against the session's own processes: against the
// cluster's containers the session's autogroup competes at its own nice
// value, 0, whatever its threads' are. So the autogroup is given
// GeneratorNice too (the whole session's, the make or shell that started
// nodrop included). Measured on 2 cores through the Traefik ingress
// controller, fresh connections at 1,000 rps: with only the threads at
// -5, 1 run of 7 delivered its load (the generator's threads waited up
// to 150 ms in the run queue while using 3 ms of CPU); with the
// autogroup at -5 too, 5 of 5, none standing still, sends late by 4 ms
// at p99, and the proxy's latency as before. Unlike real-time priority
// (tried and taken back: README), a weight takes from the cluster only
// the CPU the generator uses.
//
// Where it may not, nothing changes and the delivered-load rule still
// judges what the generator managed.
func PreferLoadGenerator() Applied {
	var a Applied
	tasks, err := os.ReadDir("/proc/self/task")
	if err == nil {
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// Getpriority returns 20 - nice.
			if cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid); err == nil && 20-cur <= GeneratorNice {
				a.Threads++
				continue
			}
			if unix.Setpriority(unix.PRIO_PROCESS, tid, GeneratorNice) == nil {
				a.Threads++
			}
		}
	}
	if nice, ok := AutogroupNice(); ok {
		a.Autogroup = nice <= GeneratorNice || os.WriteFile("/proc/self/autogroup", []byte(strconv.Itoa(GeneratorNice)), 0) == nil
	}
	return a
}

// AutogroupNice is the nice value of this process's autogroup, and false
// where the kernel has none (no CONFIG_SCHED_AUTOGROUP, or it is
// switched off).
func AutogroupNice() (int, bool) {
	if on, err := os.ReadFile("/proc/sys/kernel/sched_autogroup_enabled"); err != nil || strings.TrimSpace(string(on)) != "1" {
		return 0, false
	}
	raw, err := os.ReadFile("/proc/self/autogroup")
	if err != nil {
		return 0, false
	}
	// "/autogroup-23327 nice 0"
	var name string
	var nice int
	if _, err := fmt.Sscanf(string(raw), "%s nice %d", &name, &nice); err != nil {
		return 0, false
	}
	return nice, true
}

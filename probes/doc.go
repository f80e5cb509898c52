// Package probes records what the cluster did during a run (pods created,
// Ready, deletionTimestamp set, containers terminated with their exit
// codes, EndpointSlice transitions, events, and the sample app's own
// lifecycle log lines) as one timestamped timeline, so every loss in a
// loadgen report can be laid next to the Kubernetes action that caused it.
package probes

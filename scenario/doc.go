// Package scenario runs one configuration through one disruption under
// load and judges it against what the configuration claims. A run
// (Scenario.Run, run.go) is a list of phases over a value that undoes
// what the run made on every exit path:
//
//	validate → namespace and recorder (start) → set-up → deploy → aim the
//	loads → wait until serving → follow the ingress → take a load slot →
//	calibrate → disrupt (trigger, faults, settle, tail) → trace → judge →
//	verify the checks → stop (dump, clean up, delete the namespace)
//
// Judging (expect.go) is the one place a verdict is decided, for every
// suite, check and bench run alike; advice.go says why losses happened in
// the user's terms. The package knows nothing of Ginkgo: it returns what
// it found, and callers assert or print it.
package scenario

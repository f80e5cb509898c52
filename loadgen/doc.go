// Package loadgen drives constant-rate, open-loop HTTP load (built on
// vegeta's library) and turns what the clients saw into one typed Report.
//
// It is strict by default: a request the server dropped is lost even where
// Go's net/http would silently re-send it on a new connection. Every lost
// request is classified once, on the real error, into http_5xx, http_other,
// refused, reset, eof, timeout or other, and placed on a 100 ms timeline
// with whether its connection was reused and whether any response byte had
// arrived, so the idle-close race can be told from a killed pod.
package loadgen

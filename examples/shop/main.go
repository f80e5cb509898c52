// Command shop is a small web service written the way a team that cares
// about rollouts would: it says it is ready only once it serves, and on
// SIGTERM it keeps serving for a drain period while asking every client to
// reconnect elsewhere (Connection: close), then shuts down once idle. It
// is the example of README's "Check your own app": built into an image of
// its own (Dockerfile beside it) and checked with nodrop check.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	drain := flag.Duration("drain", 2*time.Second, "how long to keep serving after SIGTERM, asking clients to reconnect")
	flag.Parse()
	host, _ := os.Hostname()

	var ready, draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() || draining.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			// Kept-alive clients move to another pod after this answer.
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintf(w, "shop on %s\n", host)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe() }()
	ready.Store(true)
	log.Printf("shop serving on %s", *addr)

	select {
	case err := <-served:
		log.Fatal(err)
	case sig := <-stop:
		log.Printf("%s: draining for %s", sig, *drain)
	}
	draining.Store(true)
	time.Sleep(*drain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	log.Print("shop stopped")
}

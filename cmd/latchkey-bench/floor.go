package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const floorUsage = `Usage: latchkey-bench floor [-listen ADDR]

Serves the same small JSON answer, shaped like a token response, to every
request, after reading and discarding its body. Nothing is faster for a Go
net/http server on this machine: latchkey's throughput divided by the
floor's, measured alike, is the share of the server's time latchkey's own
work leaves to HTTP.

Flags:
`

// floorBody is about as long as a latchkey token response.
var floorBody = []byte(`{"access_token":"lk_at_floor0floor0floor0floor0floor0floor0floor.0floor0floor0floor0floor0floor0flo","expires_in":36000,"scope":"read","token_type":"bearer"}`)

// floorHandler answers every request with floorBody and the headers
// latchkey's token endpoint sets.
func floorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json;charset=UTF-8"}
		h["Cache-Control"] = []string{"no-store"}
		h["Pragma"] = []string{"no-cache"}
		_, _ = w.Write(floorBody)
	})
}

func runFloor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, floorUsage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:9999", "address to listen on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	// The timeouts are latchkey's own (cmd/latchkey/serve.go): net/http
	// sets deadlines per request when they are on, and the floor must pay
	// for whatever latchkey's listener pays for.
	srv := &http.Server{
		Handler:           floorHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	fmt.Fprintf(stdout, "floor listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("floor: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("floor: %w", err)
	}
	return nil
}

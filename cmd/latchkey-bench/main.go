// Command latchkey-bench load-tests a running latchkey: it drives the
// token and introspection endpoints from many keep-alive connections and
// reports throughput, latency percentiles and every failure. It also
// serves a "floor" (the fastest answer a Go net/http server gives on the
// machine, to put latchkey's figures in proportion) and seeds a database
// with millions of access tokens for the scale tests.
//
// scripts/bench.sh uses it for a repeatable procedure; the tool can be
// pointed at any latchkey on its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "latchkey-bench:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks a mistake in the command line, which exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitCode is 0 for an asked-for -h, 2 for a usage mistake, 1 otherwise.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

const usage = `latchkey-bench: load tool and benchmark helpers for latchkey

Usage:
  latchkey-bench load -url URL -admin-token TOKEN -mode MODE [flags]
        drive a running latchkey (modes: token, introspect, mixed, badsecret)
        or any HTTP server (mode floor) and report requests/s and latency;
        -sources CIDR sends each request from the next address of a range
  latchkey-bench nat -url URL -admin-token TOKEN [flags]
        many integrations behind one address while one of them retries a
        revoked key pair: how many of the others still get their tokens
  latchkey-bench floor [-listen 127.0.0.1:9999]
        serve a fixed small JSON answer to every request: the floor to
        compare latchkey with
  latchkey-bench seed -database DSN -tokens N [-expired] [flags]
        insert N access-token rows straight into latchkey's database
  latchkey-bench count -database DSN
        count the access-token rows, live and expired
  latchkey-bench slow -url URL -path PATH [flags]
        keep many slow uploads going (each declares a large body and
        drips it), as slow or hostile clients do
  latchkey-bench idle -url URL -c N [flags]
        open N keep-alive connections, leave them idle, and report how
        many the server answered, refused or closed

Run 'latchkey-bench COMMAND -h' for the flags of a command.
`

// run is the whole program; main only supplies the process's environment,
// so tests drive every subcommand in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "load":
		return runLoad(ctx, rest, getenv, stdout, stderr)
	case "nat":
		return runNAT(ctx, rest, getenv, stdout, stderr)
	case "floor":
		return runFloor(ctx, rest, stdout, stderr)
	case "seed":
		return runSeed(ctx, rest, stdout, stderr)
	case "count":
		return runCount(ctx, rest, stdout, stderr)
	case "slow":
		return runSlow(ctx, rest, stdout, stderr)
	case "idle":
		return runIdle(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// parseFlags parses args into fs and turns a parse failure into a usage
// error; the flag package has already printed what was wrong.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// Command latchkey is the latchkey OAuth 2.0 client-credentials server and
// its command-line client.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…"; without
// it the module version from the build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "latchkey:", err)
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

const usage = `latchkey: OAuth 2.0 client-credentials authorization server

Usage:
  latchkey serve [flags]                    run the server (migrates the database first)
  latchkey migrate [flags]                  apply database migrations and exit
  latchkey admin create NAME [--role R] [flags]
                                            create an admin (an owner unless --role owner|operator|auditor
                                            says otherwise) and print its first admin token
  latchkey admin token NAME [--description D] [--expires-in-days N] [flags]
                                            recovery: mint a new admin token for an existing admin
  latchkey admin list|delete NAME|set-role NAME ROLE
                                            list admins, delete one, change one's role
  latchkey admin-token create [--description D] [--expires-in-days N] [--permission P ...]
                                            mint an admin token for yourself, narrowed to the permissions given
  latchkey admin-token list|revoke ID       list your admin tokens ("expired": true for 30 days after); revoke one
  latchkey me                               show who your admin token is and what it may do
  latchkey integration create NAME [flags]  create an integration and print its key pair
  latchkey integration update NAME [flags]  change the fields whose flags are given
  latchkey integration list|get NAME|regenerate NAME|delete NAME
  latchkey integration disable|enable NAME  suspend an integration (its key pairs and tokens are refused) or resume it
  latchkey token issue [flags]              get an access token with a key pair; --dpop-key FILE binds it
                                            to that key (DPoP), --resource URI aims it at an API
  latchkey token introspect TOKEN|-         introspect a token (- reads it from stdin) as a resource server;
                                            exits 1 if it is not active
  latchkey keys list|rotate                 list signing keys; make a new active signing key
  latchkey credentials revoke VALUE|-       revoke a found client secret, admin token or access token (- reads it from stdin)
  latchkey audit [flags]                    the audit log, newest first; --integration, --actor, --action, --since, --until
  latchkey version

serve, migrate, admin create and admin token open the database directly and
take the configuration flags (see 'latchkey serve -h'). The other commands talk
to a running server: --endpoint or LATCHKEY_ENDPOINT (default
http://localhost:8080), LATCHKEY_ADMIN_TOKEN for the me, admin, admin-token,
integration, keys, credentials and audit commands, LATCHKEY_CLIENT_ID and
LATCHKEY_CLIENT_SECRET for token commands.
`

// run is the whole program; main only supplies the process's environment.
// Tests call it directly, in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[1], args[2:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "admin":
		return runAdmin(ctx, rest, getenv, stdout, stderr)
	case "admin-token":
		return runAdminTokenAPI(ctx, rest, getenv, stdout, stderr)
	case "me":
		return runMe(ctx, rest, getenv, stdout, stderr)
	case "integration":
		return runIntegration(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(ctx, rest, getenv, stdin, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, getenv, stdout, stderr)
	case "credentials":
		return runCredentials(ctx, rest, getenv, stdin, stdout, stderr)
	case "audit":
		return runAudit(ctx, rest, getenv, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "latchkey %s (%s)\n", buildVersion(), runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// buildVersion is the version set at build time, else the module version
// the go command stamped (a tag, or a pseudo-version naming the commit),
// followed by the commit it was built from and whether the tree had
// uncommitted changes. go run and -buildvcs=false stamp neither, which it
// says rather than print a bare "(devel)".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nonEmpty(version, "(devel)")
	}
	v := nonEmpty(version, bi.Main.Version)
	vcs := map[string]string{}
	for _, s := range bi.Settings {
		if rest, ok := strings.CutPrefix(s.Key, "vcs."); ok {
			vcs[rest] = s.Value
		}
	}
	rev := vcs["revision"]
	if rev == "" {
		return nonEmpty(v, "(devel)") + " (no commit recorded: built by go run or with -buildvcs=false)"
	}
	rev = rev[:min(12, len(rev))]
	if vcs["modified"] == "true" {
		rev += " with uncommitted changes"
	}
	if t := vcs["time"]; t != "" {
		rev += ", committed " + t
	}
	return nonEmpty(v, "(devel)") + " (commit " + rev + ")"
}

func nonEmpty(s, otherwise string) string {
	if s == "" || s == "(devel)" {
		return otherwise
	}
	return s
}

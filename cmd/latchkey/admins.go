package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// The admin plane's commands: who am I, admins and admin tokens. `admin
// create` and `admin token` open the database directly, to make the first
// admin and to let an admin who lost every token back in; the others talk
// to the admin API.

const adminUse = "usage: latchkey admin create NAME [--role R] | token NAME [--description D] [--expires-in-days N] | list | delete NAME | set-role NAME ROLE"

func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{adminUse}
	}
	switch args[0] {
	case "create":
		return runAdminCreate(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return runAdminToken(ctx, args[1:], getenv, stdout, stderr)
	case "list", "delete", "set-role":
		return runAdminAPI(ctx, args, getenv, stdout, stderr)
	}
	return usageError{adminUse}
}

// cliActor is who the audit log names for a command run on the database:
// the operating system's user, as far as the environment says.
func cliActor(getenv func(string) string) storage.Actor {
	name := getenv("USER")
	if name == "" {
		name = "cli"
	}
	return storage.Actor{Type: "cli", Name: name, RemoteAddr: "local"}
}

// takeFlag removes --name VALUE (or --name=VALUE, one dash or two) from
// args, which then go on to the configuration's flags, and returns the
// last value given; def when absent.
func takeFlag(args []string, name, def string) ([]string, string, error) {
	var rest []string
	v := def
	for i := 0; i < len(args); i++ {
		a := args[i]
		bare := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || len(a)-len(bare) > 2 {
			rest = append(rest, a)
			continue
		}
		switch {
		case bare == name:
			if i+1 == len(args) {
				return nil, "", usageError{fmt.Sprintf("flag --%s needs a value", name)}
			}
			v = args[i+1]
			i++
		case strings.HasPrefix(bare, name+"="):
			v = strings.TrimPrefix(bare, name+"=")
		default:
			rest = append(rest, a)
		}
	}
	return rest, v, nil
}

// openForAdmin splits NAME from the configuration flags (the name may come
// before or after them), opens and migrates the database.
func openForAdmin(ctx context.Context, cmd string, args []string, getenv func(string) string, stderr io.Writer) (*opened, string, error) {
	use := usageError{"usage: latchkey admin " + cmd + " NAME [flags]"}
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	o, err := open(ctx, "admin "+cmd, args, getenv, stderr)
	if err != nil {
		return nil, "", err
	}
	rest := o.rest
	if name == "" && len(rest) == 1 {
		name, rest = rest[0], nil
	}
	if name == "" || len(rest) > 0 {
		o.store.Close()
		return nil, "", use
	}
	if _, err := o.store.Migrate(ctx); err != nil {
		o.store.Close()
		return nil, "", err
	}
	return o, name, nil
}

// runAdminCreate makes an admin, an owner unless --role says otherwise: it
// is how the first admin comes to be, and the first must be able to make
// the others. An existing name is an error; `admin token` gives an
// existing admin a new token.
func runAdminCreate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	args, role, err := takeFlag(args, "role", string(storage.RoleOwner))
	if err != nil {
		return err
	}
	o, name, err := openForAdmin(ctx, "create", args, getenv, stderr)
	if err != nil {
		return err
	}
	defer o.store.Close()
	a, t, token, err := o.store.CreateAdmin(ctx, name, storage.Role(role), storage.DefaultAdminTokenDays, cliActor(getenv))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created admin %q (%s); its admin token (shown once, expires %s):\n", a.Name, a.Role, t.ExpiresAt.Format(time.DateOnly))
	fmt.Fprintln(stdout, token)
	return nil
}

// runAdminToken mints a new admin token for an existing admin, on the
// database: the way back in for an admin whose every token was lost,
// expired or revoked, when no one else can help (the last owner). It
// follows the admin's role. Audited as the command line's.
func runAdminToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	args, description, err := takeFlag(args, "description", "minted on the database with latchkey admin token")
	if err != nil {
		return err
	}
	args, daysFlag, err := takeFlag(args, "expires-in-days", strconv.Itoa(storage.DefaultAdminTokenDays))
	if err != nil {
		return err
	}
	days, err := strconv.Atoi(daysFlag)
	if err != nil {
		return usageError{fmt.Sprintf("--expires-in-days %q: want a number of days, or -1 for never", daysFlag)}
	}
	o, name, err := openForAdmin(ctx, "token", args, getenv, stderr)
	if err != nil {
		return err
	}
	defer o.store.Close()
	a, err := o.store.GetAdmin(ctx, name)
	if err != nil {
		return err
	}
	t, token, err := o.store.CreateAdminToken(ctx, a, description, days, nil, cliActor(getenv))
	if err != nil {
		return err
	}
	expires := "never expires"
	if t.ExpiresAt != nil {
		expires = "expires " + t.ExpiresAt.Format(time.DateOnly)
	}
	fmt.Fprintf(stderr, "new admin token %s for %q (%s; shown once, %s):\n", t.ID, a.Name, a.Role, expires)
	fmt.Fprintln(stdout, token)
	return nil
}

// runAdminAPI runs admin list, delete and set-role through the admin API.
func runAdminAPI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, args, fs, client, err := command("admin", adminUse, args, getenv, stderr)
	if err != nil {
		return err
	}
	limit := fs.Int("limit", 0, "page size, 1-1000 (list)")
	pageToken := fs.String("page-token", "", "next_page_token of the previous page (list)")
	pos, c, err := parseAsAdmin(fs, args, client, getenv)
	if err != nil {
		return err
	}
	var b []byte
	switch {
	case sub == "list" && len(pos) == 0:
		b, err = c.admin(ctx, http.MethodGet, pagedPath("/admin/admins", *limit, *pageToken), nil)
	case sub == "delete" && len(pos) == 1:
		if _, err = c.admin(ctx, http.MethodDelete, "/admin/admins/"+url.PathEscape(pos[0]), nil); err == nil {
			fmt.Fprintf(stdout, "deleted admin %s\n", pos[0])
		}
		return err
	case sub == "set-role" && len(pos) == 2:
		b, err = c.admin(ctx, http.MethodPatch, "/admin/admins/"+url.PathEscape(pos[0]), map[string]any{"role": pos[1]})
	default:
		return usageError{adminUse}
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

func pagedPath(path string, limit int, pageToken string) string {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return path
}

const adminTokenUse = "usage: latchkey admin-token create [--description D] [--expires-in-days N] [--permission P ...] | list | revoke ID"

// runAdminTokenAPI manages the calling admin's own tokens through the
// admin API.
func runAdminTokenAPI(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, args, fs, client, err := command("admin-token", adminTokenUse, args, getenv, stderr)
	if err != nil {
		return err
	}
	var perms listFlag
	description := fs.String("description", "", "where the token will be used (create)")
	days := fs.Int("expires-in-days", storage.DefaultAdminTokenDays, "days until it expires; -1: never (create)")
	fs.Var(&perms, "permission", "narrow the token to this permission; repeat or space-separate; default: the calling token's (create)")
	limit := fs.Int("limit", 0, "page size, 1-1000 (list)")
	pageToken := fs.String("page-token", "", "next_page_token of the previous page (list)")
	pos, c, err := parseAsAdmin(fs, args, client, getenv)
	if err != nil {
		return err
	}
	given := flagsGiven(fs)
	var b []byte
	switch {
	case sub == "create" && len(pos) == 0:
		in := map[string]any{"description": *description, "expires_in_days": *days}
		if given["permission"] {
			in["permissions"] = []string(perms)
		}
		b, err = c.admin(ctx, http.MethodPost, "/admin/tokens", in)
	case sub == "list" && len(pos) == 0:
		b, err = c.admin(ctx, http.MethodGet, pagedPath("/admin/tokens", *limit, *pageToken), nil)
	case sub == "revoke" && len(pos) == 1:
		if _, err = c.admin(ctx, http.MethodDelete, "/admin/tokens/"+url.PathEscape(pos[0]), nil); err == nil {
			fmt.Fprintf(stdout, "revoked admin token %s\n", pos[0])
		}
		return err
	default:
		return usageError{adminTokenUse}
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

// runMe shows who the admin token is and what it may do.
func runMe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	_, args, fs, client, err := command("me", "usage: latchkey me", append([]string{"me"}, args...), getenv, stderr)
	if err != nil {
		return err
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"usage: latchkey me"}
	}
	c, err := client().asAdmin(getenv)
	if err != nil {
		return err
	}
	b, err := c.admin(ctx, http.MethodGet, "/admin/me", nil)
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

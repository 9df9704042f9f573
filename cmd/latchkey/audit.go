package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// runAudit is `latchkey audit`: one page of GET /admin/audit, newest first,
// with its filters.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "usage: latchkey audit [--integration NAME] [--actor NAME] [--action ACTION] [--since T] [--until T] [--limit N] [--page-token T]"
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs, getenv)
	var (
		integration = fs.String("integration", "", "only events about this integration")
		actorName   = fs.String("actor", "", "only events by this admin, integration or address")
		action      = fs.String("action", "", "only events of this action, e.g. integration.update or credential.revoke")
		since       = fs.String("since", "", "only events at or after this time: RFC 3339, or a duration ago such as 24h")
		until       = fs.String("until", "", "only events before this time: RFC 3339, or a duration ago")
		limit       = fs.Int("limit", 0, "page size, 1-1000 (default: the server's, 100)")
		pageToken   = fs.String("page-token", "", "next_page_token of the previous page")
	)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{use}
	}
	q := url.Values{}
	for name, v := range map[string]string{"integration": *integration, "actor": *actorName, "action": *action, "page_token": *pageToken} {
		if v != "" {
			q.Set(name, v)
		}
	}
	now := time.Now()
	for name, v := range map[string]string{"since": *since, "until": *until} {
		if v == "" {
			continue
		}
		t, err := auditTime(v, now)
		if err != nil {
			return usageError{fmt.Sprintf("--%s %s: %v", name, v, err)}
		}
		q.Set(name, t)
	}
	if *limit != 0 {
		q.Set("limit", fmt.Sprint(*limit))
	}
	c, err := client().asAdmin(getenv)
	if err != nil {
		return err
	}
	path := "/admin/audit"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	b, err := c.admin(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

// auditTime is a --since or --until as the API takes it: an RFC 3339 time
// as it is, or a duration before now.
func auditTime(v string, now time.Time) (string, error) {
	if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return v, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return "", fmt.Errorf("want an RFC 3339 time (2024-05-01T12:00:00Z) or a duration ago (24h)")
	}
	return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
}

// runCredentials is `latchkey credentials revoke VALUE|-`: POST
// /admin/credentials/revoke with a credential found in the wild.
func runCredentials(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const use = "usage: latchkey credentials revoke VALUE|-   (- reads the value from standard input)"
	sub, args, fs, client, err := command("credentials", use, args, getenv, stderr)
	if err != nil {
		return err
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if sub != "revoke" || len(pos) != 1 {
		return usageError{use}
	}
	value := pos[0]
	if value == "-" {
		// From standard input, so the credential stays out of the process
		// list and the shell history.
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			return fmt.Errorf("read the credential from standard input: %w", err)
		}
		value = strings.TrimSpace(string(b))
	}
	if value == "" {
		return usageError{"credentials revoke: the credential is empty"}
	}
	c, err := client().asAdmin(getenv)
	if err != nil {
		return err
	}
	b, err := c.admin(ctx, http.MethodPost, "/admin/credentials/revoke", map[string]string{"credential": value})
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

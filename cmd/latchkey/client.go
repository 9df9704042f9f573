package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/latchkey/latchkey/dpop"
)

// apiClient talks to a running latchkey for the management commands.
type apiClient struct {
	endpoint string
	bearer   string
	http     *http.Client
}

// clientFlags registers --endpoint on fs and returns a function that builds
// the client after parsing.
func clientFlags(fs *flag.FlagSet, getenv func(string) string) func() *apiClient {
	def := getenv("LATCHKEY_ENDPOINT")
	if def == "" {
		def = "http://localhost:8080"
	}
	endpoint := fs.String("endpoint", def, "base URL of the latchkey server (env LATCHKEY_ENDPOINT)")
	return func() *apiClient {
		return &apiClient{endpoint: strings.TrimRight(*endpoint, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	}
}

// command splits GROUP's arguments into the subcommand and its arguments,
// and prepares the subcommand's flag set with --endpoint; the returned
// function builds the API client once the flags are parsed.
func command(group, use string, args []string, getenv func(string) string, stderr io.Writer) (string, []string, *flag.FlagSet, func() *apiClient, error) {
	if len(args) == 0 {
		return "", nil, nil, nil, usageError{use}
	}
	fs := flag.NewFlagSet(group+" "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	return args[0], args[1:], fs, clientFlags(fs, getenv), nil
}

// asAdmin sets the admin token from LATCHKEY_ADMIN_TOKEN; it is never a
// flag, which would show it in the process list.
func (c *apiClient) asAdmin(getenv func(string) string) (*apiClient, error) {
	if c.bearer = getenv("LATCHKEY_ADMIN_TOKEN"); c.bearer == "" {
		return nil, usageError{"LATCHKEY_ADMIN_TOKEN is not set: this command needs an admin token"}
	}
	return c, nil
}

// flagsGiven names the flags the command line set, so that a flag left
// out can leave its field as it is.
func flagsGiven(fs *flag.FlagSet) map[string]bool {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return given
}

// parseAsAdmin parses the command line (see parse) of a command that calls
// the admin API, and gives the client the admin token.
func parseAsAdmin(fs *flag.FlagSet, args []string, client func() *apiClient, getenv func(string) string) ([]string, *apiClient, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, nil, err
	}
	c, err := client().asAdmin(getenv)
	return pos, c, err
}

// parse parses flags that may come before or after positional arguments,
// as in `latchkey integration create billing --scope read`.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// apiError is an error answer from the server, shown as its message.
type apiError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *apiError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Description)
	}
	return fmt.Sprintf("%s (%d)", e.Code, e.Status)
}

// do sends a request and returns the body of a 2xx answer.
func (c *apiClient) do(ctx context.Context, method, path string, body io.Reader, contentType string, auth func(*http.Request)) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			e.Code = http.StatusText(resp.StatusCode)
		}
		return nil, e
	}
	return b, nil
}

func (c *apiClient) admin(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(ctx, method, path, body, ct, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+c.bearer) })
}

// printJSON re-indents a JSON answer for people; it stays valid JSON for jq.
func printJSON(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if b = bytes.TrimSpace(b); len(b) == 0 {
		return nil
	}
	if err := json.Indent(&out, b, "", "  "); err != nil {
		_, err = w.Write(b)
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// listFlag collects a repeatable flag; each value may also be a
// space-separated list, as OAuth scope parameters are.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.Fields(v)...)
	return nil
}

// rateFlag is --token-rate: tokens a minute, 0 for no cap, or "default"
// for the server's integration_token_rate (null in the API).
type rateFlag struct{ v *int64 }

func (f *rateFlag) String() string {
	if f.v == nil {
		return "default"
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f *rateFlag) Set(s string) error {
	if s == "default" {
		f.v = nil
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New(`want a whole number of tokens a minute, 0 for no cap, or "default"`)
	}
	f.v = &n
	return nil
}

// value is the flag as the admin API takes it.
func (f *rateFlag) value() any {
	if f.v == nil {
		return nil
	}
	return *f.v
}

func runIntegration(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "usage: latchkey integration create|list|get|update|disable|enable|regenerate|delete [NAME] [flags]"
	sub, args, fs, client, err := command("integration", use, args, getenv, stderr)
	if err != nil {
		return err
	}
	var (
		description   = fs.String("description", "", "what the integration is for (create, update)")
		canIntrospect = fs.Bool("can-introspect", false, "allow it to call /oauth2/introspect: a resource server (create, update)")
		lifetime      = fs.Duration("token-lifetime", 0, "token lifetime, e.g. 1h; default: the server's (create, update)")
		grace         = fs.Duration("grace", 0, "keep the old key pair working this long, e.g. 1h (regenerate)")
		limit         = fs.Int("limit", 0, "page size, 1-1000 (list)")
		pageToken     = fs.String("page-token", "", "next_page_token of the previous page (list)")
		authMethod    = fs.String("auth-method", "", "client_secret_basic, client_secret_post or private_key_jwt (create, update)")
		jwksFile      = fs.String("jwks", "", `file holding the integration's public JWK Set, for private_key_jwt; "none" removes it (create, update)`)
		jwksURI       = fs.String("jwks-uri", "", `URL of the integration's public JWK Set, instead of --jwks; "none" removes it (create, update)`)
		requireDPoP   = fs.Bool("require-dpop", false, "issue it tokens only with a DPoP proof, bound to its key (create, update)")
		scopes        listFlag
		audience      listFlag
		introAudience listFlag
		rate          rateFlag
	)
	fs.Var(&scopes, "scope", "allowed scope; repeat or space-separate (create, update)")
	fs.Var(&audience, "audience", "allowed audience; repeat or space-separate (create, update)")
	fs.Var(&introAudience, "introspection-audience", "as a resource server, see at introspection only tokens for these audiences; repeat or space-separate (create, update)")
	fs.Var(&rate, "token-rate", `tokens a minute it may be issued; 0: no cap; "default": the server's integration_token_rate (create, update)`)
	pos, c, err := parseAsAdmin(fs, args, client, getenv)
	if err != nil {
		return err
	}
	given := flagsGiven(fs)
	name := ""
	switch {
	case sub == "list" && len(pos) == 0:
	case sub != "list" && len(pos) == 1:
		name = url.PathEscape(pos[0])
	default:
		return usageError{use}
	}
	keys, err := keyFlags(given, *jwksFile, *jwksURI)
	if err != nil {
		return err
	}
	var b []byte
	switch sub {
	case "create":
		in := map[string]any{"name": pos[0], "description": *description, "scopes": []string(scopes),
			"audience": []string(audience), "can_introspect": *canIntrospect}
		if *lifetime != 0 {
			in["token_lifetime_seconds"] = int64(lifetime.Seconds())
		}
		if given["token-rate"] {
			in["token_rate_per_minute"] = rate.value()
		}
		if *authMethod != "" {
			in["token_endpoint_auth_method"] = *authMethod
		}
		maps.Copy(in, keys)
		if *requireDPoP {
			in["require_dpop"] = true
		}
		if len(introAudience) > 0 {
			in["introspection_audience"] = []string(introAudience)
		}
		b, err = c.admin(ctx, http.MethodPost, "/admin/integrations", in)
	case "update":
		// Only what was given changes (JSON Merge Patch): a flag left out
		// leaves its field as it is.
		patch := map[string]any{}
		set := func(flagName, field string, v any) {
			if given[flagName] {
				patch[field] = v
			}
		}
		set("description", "description", *description)
		set("scope", "scopes", []string(scopes))
		set("audience", "audience", []string(audience))
		set("can-introspect", "can_introspect", *canIntrospect)
		set("token-lifetime", "token_lifetime_seconds", int64(lifetime.Seconds()))
		set("token-rate", "token_rate_per_minute", rate.value())
		set("auth-method", "token_endpoint_auth_method", *authMethod)
		maps.Copy(patch, keys)
		set("require-dpop", "require_dpop", *requireDPoP)
		set("introspection-audience", "introspection_audience", []string(introAudience))
		if len(patch) == 0 {
			return usageError{"integration update: nothing to change; give --description, --scope, --audience, --can-introspect, --token-lifetime, --token-rate, --auth-method, --jwks, --jwks-uri, --require-dpop or --introspection-audience"}
		}
		b, err = c.admin(ctx, http.MethodPatch, "/admin/integrations/"+name, patch)
	case "list":
		q := url.Values{}
		if *limit > 0 {
			q.Set("limit", fmt.Sprint(*limit))
		}
		if *pageToken != "" {
			q.Set("page_token", *pageToken)
		}
		path := "/admin/integrations"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		b, err = c.admin(ctx, http.MethodGet, path, nil)
	case "get":
		b, err = c.admin(ctx, http.MethodGet, "/admin/integrations/"+name, nil)
	case "disable", "enable":
		b, err = c.admin(ctx, http.MethodPatch, "/admin/integrations/"+name, map[string]any{"disabled": sub == "disable"})
	case "regenerate":
		if *grace < 0 || *grace%time.Second != 0 {
			return usageError{fmt.Sprintf("--grace %s: must be a whole number of seconds, 0 or more", *grace)}
		}
		b, err = c.admin(ctx, http.MethodPost, "/admin/integrations/"+name+"/key-pair",
			map[string]any{"grace_seconds": int64(grace.Seconds())})
	case "delete":
		if _, err = c.admin(ctx, http.MethodDelete, "/admin/integrations/"+name, nil); err == nil {
			fmt.Fprintf(stdout, "deleted integration %s\n", pos[0])
		}
	default:
		return usageError{use}
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

// keyFlags turns --jwks and --jwks-uri into the admin API's fields: the
// key set read from its file, or null for "none".
func keyFlags(given map[string]bool, file, uri string) (map[string]any, error) {
	out := map[string]any{}
	if given["jwks"] {
		out["jwks"] = nil
		if file != "none" {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, usageError{fmt.Sprintf("--jwks: %v", err)}
			}
			if !json.Valid(b) {
				return nil, usageError{fmt.Sprintf("--jwks %s: not JSON; want a JWK Set, {\"keys\": [...]}", file)}
			}
			out["jwks"] = json.RawMessage(b)
		}
	}
	if given["jwks-uri"] {
		out["jwks_uri"] = nil
		if uri != "none" {
			out["jwks_uri"] = uri
		}
	}
	return out, nil
}

func runToken(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	const use = "usage: latchkey token issue [--scope S] [--audience A] [--resource URI] [--dpop-key FILE] | latchkey token introspect TOKEN|-"
	sub, args, fs, client, err := command("token", use, args, getenv, stderr)
	if err != nil {
		return err
	}
	var scopes, audience, resources listFlag
	fs.Var(&scopes, "scope", "scope to ask for; repeat or space-separate (issue)")
	fs.Var(&audience, "audience", "audience to ask for (issue)")
	fs.Var(&resources, "resource", "resource indicator (RFC 8707) to ask for; repeat for several (issue)")
	dpopKey := fs.String("dpop-key", "", "PEM private key (EC P-256, Ed25519 or RSA) whose DPoP proof binds the token (issue)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	c := client()
	id, secret := getenv("LATCHKEY_CLIENT_ID"), getenv("LATCHKEY_CLIENT_SECRET")
	if id == "" || secret == "" {
		return usageError{"LATCHKEY_CLIENT_ID and LATCHKEY_CLIENT_SECRET must be set to the key pair to use"}
	}
	form := url.Values{}
	var path, proof string
	switch {
	case sub == "issue" && len(pos) == 0:
		path = "/oauth2/token"
		form.Set("grant_type", "client_credentials")
		if len(scopes) > 0 {
			form.Set("scope", scopes.String())
		}
		if len(audience) > 0 {
			form.Set("audience", audience.String())
		}
		for _, r := range resources {
			form.Add("resource", r)
		}
		if *dpopKey != "" {
			if proof, err = tokenProof(ctx, c, *dpopKey); err != nil {
				return err
			}
		}
	case sub == "introspect" && len(pos) == 1:
		path = "/oauth2/introspect"
		token := pos[0]
		if token == "-" {
			// From standard input, so the token stays out of the process
			// list and the shell history.
			b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
			if err != nil {
				return fmt.Errorf("read token from standard input: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		form.Set("token", token)
	default:
		return usageError{use}
	}
	b, err := c.do(ctx, http.MethodPost, path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded",
		func(r *http.Request) {
			r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			if proof != "" {
				r.Header.Set("DPoP", proof)
			}
		})
	if err != nil {
		return err
	}
	if err := printJSON(stdout, b); err != nil {
		return err
	}
	if sub == "introspect" {
		// A script asks `latchkey token introspect "$T" && …`: the exit
		// code is the answer, the JSON the details.
		var in struct {
			Active bool `json:"active"`
		}
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("introspect: the answer is not JSON: %w", err)
		}
		if !in.Active {
			return errInactive
		}
	}
	return nil
}

// tokenProof makes the DPoP proof (RFC 9449 §4) of a token request, signed
// with the private key in the PEM file keyFile. Its htu is the token
// endpoint the server's metadata names: the server checks it against its
// public URL, which differs from --endpoint behind a proxy or a port
// forward.
func tokenProof(ctx context.Context, c *apiClient, keyFile string) (string, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", usageError{fmt.Sprintf("--dpop-key: %v", err)}
	}
	key, err := parsePrivateKey(b)
	if err != nil {
		return "", usageError{fmt.Sprintf("--dpop-key %s: %v", keyFile, err)}
	}
	md, err := c.do(ctx, http.MethodGet, "/.well-known/oauth-authorization-server", nil, "", nil)
	if err != nil {
		return "", fmt.Errorf("read the server's metadata for the token endpoint's URL: %w", err)
	}
	var m struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(md, &m); err != nil || m.TokenEndpoint == "" {
		return "", errors.New("the server's metadata names no token_endpoint")
	}
	return dpop.NewProof(key, http.MethodPost, m.TokenEndpoint, "", "", time.Now())
}

// parsePrivateKey reads the first PEM block of b: PKCS #8 (what `openssl
// genpkey` writes), or SEC 1 EC or PKCS #1 RSA.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block; want a private key, e.g. from openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", key)
	}
	return signer, nil
}

// errInactive is token introspect's answer for a token that is not active,
// after it has printed {"active": false}.
var errInactive = errors.New("the token is not active")

func runKeys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "usage: latchkey keys list|rotate"
	sub, args, fs, client, err := command("keys", use, args, getenv, stderr)
	if err != nil {
		return err
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{use}
	}
	c, err := client().asAdmin(getenv)
	if err != nil {
		return err
	}
	var b []byte
	switch sub {
	case "list":
		b, err = c.admin(ctx, http.MethodGet, "/admin/signing-keys", nil)
	case "rotate":
		b, err = c.admin(ctx, http.MethodPost, "/admin/signing-keys/rotate", nil)
	default:
		return usageError{use}
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, b)
}

package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server/oauth/credential"
)

const revokePath = "/admin/credentials/revoke"

// revokeCredential posts value to POST /admin/credentials/revoke as the
// bootstrap admin and requires status want.
func (e *env) revokeCredential(value string, want int) map[string]any {
	e.t.Helper()
	return e.mustAdmin("POST", revokePath, map[string]any{"credential": value}, want)
}

// wantRevokedBody requires the 200 answer of a revocation by value.
func wantRevokedBody(t *testing.T, what string, got map[string]any, kind, ownerType, owner string, revoked bool) {
	t.Helper()
	want := map[string]any{"kind": kind, "owner": map[string]any{"type": ownerType, "name": owner}, "revoked": revoked}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s: answer %s, want %s", what, g, w)
	}
}

// tokenRefused requires the token endpoint to refuse kp with 401.
func (e *env) tokenRefused(what string, kp keyPair) {
	e.t.Helper()
	status, _, out := e.form("/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		e.t.Errorf("%s: token request = %d %v, want 401 invalid_client", what, status, out)
	}
}

// inactive requires introspection, as rs, to call token inactive.
func (e *env) inactive(what string, rs keyPair, token string) {
	e.t.Helper()
	if got := e.introspect(rs, token); got["active"] != false {
		e.t.Errorf("%s: introspection = %v, want inactive", what, got)
	}
}

// active requires introspection, as rs, to call token active.
func (e *env) active(what string, rs keyPair, token string) {
	e.t.Helper()
	if got := e.introspect(rs, token); got["active"] != true {
		e.t.Errorf("%s: introspection = %v, want active", what, got)
	}
}

func TestCredentialRevokeClientSecret(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	rs := e.resourceServer()

	t.Run("current pair", func(t *testing.T) {
		kp := e.createIntegration(map[string]any{"name": "leaky", "scopes": []string{"read"}})
		tok := e.token(kp, nil)
		out := e.revokeCredential(kp.Secret, http.StatusOK)
		wantRevokedBody(t, "revoke", out, "client_secret", "integration", "leaky", true)
		e.tokenRefused("the revoked pair", kp)
		e.inactive("a token of the revoked pair", rs, tok)

		ig := e.mustAdmin("GET", "/admin/integrations/leaky", nil, http.StatusOK)
		if v, ok := ig["key_pair"]; !ok || v != nil {
			t.Errorf("key_pair = %#v (present %v), want null: the integration has no current pair", v, ok)
		}
		if _, ok := ig["previous_key_pair"]; ok {
			t.Errorf("previous_key_pair = %v, want none", ig["previous_key_pair"])
		}
		listed, _ := e.listAll(testBootstrap, "/admin/integrations")
		for _, it := range listed {
			if it["name"] == "leaky" && it["key_pair"] != nil {
				t.Errorf("listed key_pair = %v, want null", it["key_pair"])
			}
		}

		// Found again: it had stopped working already.
		e.clock.Advance(time.Minute)
		wantRevokedBody(t, "revoke again", e.revokeCredential(kp.Secret, http.StatusOK), "client_secret", "integration", "leaky", false)

		// Regenerating gives the integration a pair again, with nothing to
		// replace.
		out = e.mustAdmin("POST", "/admin/integrations/leaky/key-pair", nil, http.StatusCreated)
		if out["previous_expires_at"] != nil {
			t.Errorf("regenerate: previous_expires_at = %v, want null", out["previous_expires_at"])
		}
		fresh := keyPair{ID: out["client_id"].(string), Secret: out["client_secret"].(string)}
		e.active("a token of the regenerated pair", rs, e.token(fresh, nil))
		e.tokenRefused("the revoked pair after regeneration", kp)
	})

	t.Run("previous pair in its grace period", func(t *testing.T) {
		old := e.createIntegration(map[string]any{"name": "graced"})
		oldTok := e.token(old, nil)
		cur := e.regenerate("graced", 3600)
		curTok := e.token(cur, nil)
		wantRevokedBody(t, "revoke", e.revokeCredential(old.Secret, http.StatusOK), "client_secret", "integration", "graced", true)
		e.tokenRefused("the revoked pair in grace", old)
		e.inactive("its token", rs, oldTok)
		e.active("the current pair's token", rs, curTok)
		e.token(cur, nil)
		ig := e.mustAdmin("GET", "/admin/integrations/graced", nil, http.StatusOK)
		if kp, _ := ig["key_pair"].(map[string]any); kp == nil || kp["client_id"] != cur.ID {
			t.Errorf("key_pair = %v, want the current pair %s", ig["key_pair"], cur.ID)
		}
		if _, ok := ig["previous_key_pair"]; ok {
			t.Errorf("previous_key_pair = %v, want none: it was revoked", ig["previous_key_pair"])
		}
	})

	t.Run("mistyped", func(t *testing.T) {
		kp := e.createIntegration(map[string]any{"name": "typo"})
		for name, v := range map[string]string{
			"last character changed": flipLast(kp.Secret),
			"truncated":              kp.Secret[:len(kp.Secret)-1],
		} {
			out := e.revokeCredential(v, http.StatusNotFound)
			if out["error"] != "not_found" || !strings.Contains(fmt.Sprint(out["error_description"]), "mistyped") {
				t.Errorf("%s: %v, want not_found saying it was mistyped", name, out)
			}
		}
		e.token(kp, nil) // still works
	})
}

func TestCredentialRevokeAdminToken(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)
	second := e.mintAdminToken(alice, map[string]any{"description": "second"})["token"].(string)

	wantRevokedBody(t, "revoke", e.revokeCredential(alice, http.StatusOK), "admin_token", "admin", "alice", true)
	if status, _ := e.adminCall("GET", "/admin/tokens", alice, nil); status != http.StatusUnauthorized {
		t.Errorf("the revoked admin token: GET /admin/tokens = %d, want 401", status)
	}
	e.adminAs(second, "GET", "/admin/tokens", nil, http.StatusOK)
	// Revoking deletes it: nothing is left to find.
	e.revokeCredential(alice, http.StatusNotFound)

	// An admin may revoke the very token it calls with.
	wantRevokedBody(t, "revoke one's own", e.adminAs(second, "POST", revokePath, map[string]any{"credential": second}, http.StatusOK),
		"admin_token", "admin", "alice", true)
	if status, _ := e.adminCall("GET", "/admin/tokens", second, nil); status != http.StatusUnauthorized {
		t.Errorf("the token that revoked itself: GET /admin/tokens = %d, want 401", status)
	}

	t.Run("expired", func(t *testing.T) {
		bob := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "bob"}, http.StatusCreated)["token"].(string)
		short := e.mintAdminToken(bob, map[string]any{"description": "short", "expires_in_days": 1})["token"].(string)
		e.clock.Advance(25 * time.Hour)
		wantRevokedBody(t, "revoke an expired token", e.revokeCredential(short, http.StatusOK), "admin_token", "admin", "bob", false)
	})

	t.Run("bootstrap token", func(t *testing.T) {
		out := e.revokeCredential(testBootstrap, http.StatusConflict)
		if out["error"] != "conflict" {
			t.Errorf("revoke the bootstrap token: %v, want conflict", out)
		}
		e.mustAdmin("GET", "/admin/tokens", nil, http.StatusOK) // still works
	})
}

func TestCredentialRevokeAccessToken(t *testing.T) {
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			var e *env
			if format == "jwt" {
				e = newEnv(t, withJWT(""))
			} else {
				e = newEnv(t)
			}
			e.failOnServerErrors()
			rs := e.resourceServer()
			kp := e.createIntegration(map[string]any{"name": "holder"})
			tok, other := e.token(kp, nil), e.token(kp, nil)
			if (format == "jwt") != (strings.Count(tok, ".") == 2 && !strings.HasPrefix(tok, credential.AccessTokenPrefix)) {
				t.Fatalf("token %q is not a %s token", tok, format)
			}

			wantRevokedBody(t, "revoke", e.revokeCredential(tok, http.StatusOK), "access_token", "integration", "holder", true)
			e.inactive("the revoked token", rs, tok)
			e.active("another token of its pair", rs, other)
			e.token(kp, nil) // the pair still works
			e.revokeCredential(tok, http.StatusNotFound)

			// A look-alike whose storage key is a live token's (the same
			// signature part, another body) is not that token.
			forged := forgeSameSignature(t, other)
			e.revokeCredential(forged, http.StatusNotFound)
			e.active("the token a look-alike mimics", rs, other)

			// Expired, and not purged yet.
			e.clock.Advance(11 * time.Hour)
			wantRevokedBody(t, "revoke an expired token", e.revokeCredential(other, http.StatusOK), "access_token", "integration", "holder", false)
		})
	}
}

// forgeSameSignature returns token with its body changed and its
// signature part kept: an opaque token's key, or a JWT's payload.
func forgeSameSignature(t *testing.T, token string) string {
	t.Helper()
	if body, ok := strings.CutPrefix(token, credential.AccessTokenPrefix); ok {
		key, sig, _ := strings.Cut(body, ".")
		b, _ := base64.RawURLEncoding.DecodeString(key)
		b[0] ^= 1
		return credential.AccessTokenPrefix + base64.RawURLEncoding.EncodeToString(b) + "." + sig
	}
	parts := strings.Split(token, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(claims, &m); err != nil {
		t.Fatal(err)
	}
	m["sub"] = "someone-else"
	forged, _ := json.Marshal(m)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
}

func TestCredentialRevokeNotFound(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	kp := e.createIntegration(map[string]any{"name": "bystander"})
	e.createIntegration(map[string]any{"name": "deleted"})
	deleted := e.regenerate("deleted", 0)
	e.mustAdmin("DELETE", "/admin/integrations/deleted", nil, http.StatusNoContent)

	for name, v := range map[string]string{
		"unknown client secret":          credential.NewClientSecret(),
		"unknown admin token":            credential.NewAdminToken(),
		"a deleted integration's secret": deleted.Secret,
		"unknown opaque token":           credential.AccessTokenPrefix + "AAAA.BBBB",
		"opaque token prefix only":       credential.AccessTokenPrefix,
		"a JWT from elsewhere":           "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
		"three dots of nothing":          "..",
		"a client ID":                    kp.ID,
		"not a credential":               "hunter2",
	} {
		out := e.revokeCredential(v, http.StatusNotFound)
		if out["error"] != "not_found" || out["error_description"] == "" {
			t.Errorf("%s: %v, want not_found with a description", name, out)
		}
	}
	e.token(kp, nil)

	for name, body := range map[string]any{
		"no credential":    map[string]any{},
		"empty":            map[string]any{"credential": ""},
		"blank":            map[string]any{"credential": " \n"},
		"not a string":     map[string]any{"credential": 5},
		"unknown field":    map[string]any{"credential": kp.Secret, "kind": "client_secret"},
		"not JSON":         "credential=" + kp.Secret,
		"two JSON objects": `{"credential":"x"}{}`,
	} {
		status, h, b := e.callAdminRaw(e.adminURL(), "POST", revokePath, testBootstrap, strings.NewReader(mustJSON(t, body)))
		if status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400; body %s", name, status, b)
		}
		requireAPIError(t, name, h, b)
	}
	e.token(kp, nil) // the unknown-field request revoked nothing

	if status, _ := e.adminCall("POST", revokePath, "", map[string]any{"credential": kp.Secret}); status != http.StatusUnauthorized {
		t.Errorf("without an admin token: status %d, want 401", status)
	}
	if status, _ := e.adminCall("POST", revokePath, flipLast(credential.NewAdminToken()), map[string]any{"credential": kp.Secret}); status != http.StatusUnauthorized {
		t.Errorf("with a bad admin token: status %d, want 401", status)
	}
	e.token(kp, nil)
}

// mustJSON encodes body, or returns it as it is when it is a string.
func mustJSON(t *testing.T, body any) string {
	t.Helper()
	if s, ok := body.(string); ok {
		return s
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCredentialRevokeAudit revokes one credential of each kind and looks
// for every one of them, in pieces and hashed, in the whole audit log (its
// table and its API) and in the server's log: none may be there.
func TestCredentialRevokeAudit(t *testing.T) {
	opaque := newEnv(t)
	jwtEnv := newEnv(t, withJWT(""))
	for _, e := range []*env{opaque, jwtEnv} {
		e.failOnServerErrors()
		kp := e.createIntegration(map[string]any{"name": "audited"})
		tok := e.token(kp, nil)
		alice := e.mustAdmin("POST", "/admin/admins", map[string]any{"name": "alice"}, http.StatusCreated)["token"].(string)
		aliceTokens, _ := e.listAll(alice, "/admin/tokens")
		e.clock.Advance(time.Second)
		start := e.now()

		revoked := []string{tok, kp.Secret, alice}
		for _, v := range revoked {
			e.revokeCredential(v, http.StatusOK)
		}
		// A mistyped one and one that is not there are not audited.
		e.revokeCredential(flipLast(kp.Secret), http.StatusNotFound)
		e.revokeCredential(credential.NewClientSecret(), http.StatusNotFound)

		events, _ := e.listAll(testBootstrap, "/admin/audit?action=credential.revoke")
		if len(events) != 3 {
			t.Fatalf("%d credential.revoke events, want 3: %v", len(events), events)
		}
		want := []struct{ objectType, object, kind, idKey, id string }{
			{"admin", "alice", "admin_token", "admin_token_id", aliceTokens[0]["id"].(string)},
			{"integration", "audited", "client_secret", "client_id", kp.ID},
			{"integration", "audited", "access_token", "client_id", kp.ID},
		}
		for i, ev := range events {
			w := want[i]
			d, _ := ev["details"].(map[string]any)
			if ev["actor"] != "bootstrap" || ev["object_type"] != w.objectType || ev["object"] != w.object ||
				d["kind"] != w.kind || d["owner_type"] != w.objectType || d["owner"] != w.object || d[w.idKey] != w.id || d["revoked"] != true {
				t.Errorf("event %d = %v, want by bootstrap about %s %s, details kind %s, %s %s", i, ev, w.objectType, w.object, w.kind, w.idKey, w.id)
			}
			wantTime(t, fmt.Sprintf("event %d time", i), ev["time"], start)
		}
		if d := events[2]["details"].(map[string]any); d["jti"] == nil || d["jti"] == "" {
			t.Errorf("the access token's event has no jti: %v", d)
		}

		all, _ := e.listAll(testBootstrap, "/admin/audit")
		apiJSON, _ := json.Marshal(all)
		table := auditTableText(t, e)
		minter := credential.NewMinter(testSecrets)
		for _, v := range revoked {
			for _, needle := range secretTraces(v, minter) {
				for where, hay := range map[string]string{"the audit API": string(apiJSON), "the audit table": table, "the server log": e.logs.String()} {
					if strings.Contains(hay, needle) {
						t.Errorf("%s holds %q, a piece or hash of a revoked credential", where, needle)
					}
				}
			}
		}
	}
}

// secretTraces are the strings that would betray v: every 12 characters
// of it past its prefix, and its hashes as the store and the token
// strategies make them, in common encodings.
func secretTraces(v string, minter *credential.Minter) []string {
	var out []string
	body := v
	for _, p := range []string{credential.ClientSecretPrefix, credential.AdminTokenPrefix, credential.AccessTokenPrefix} {
		body = strings.TrimPrefix(body, p)
	}
	for i := 0; i+12 <= len(body); i++ {
		out = append(out, body[i:i+12])
	}
	hashes := [][]byte{minter.HashSecret(v)}
	if i := strings.LastIndexByte(v, '.'); i >= 0 {
		sum := sha256.Sum256([]byte(v[i+1:]))
		hashes = append(hashes, sum[:])
	}
	for _, h := range hashes {
		out = append(out, hex.EncodeToString(h), base64.StdEncoding.EncodeToString(h), base64.RawURLEncoding.EncodeToString(h))
	}
	return out
}

// auditTableText reads the whole audit_events table below the API.
func auditTableText(t *testing.T, e *env) string {
	t.Helper()
	rows, err := e.rawDB().Query("SELECT * FROM audit_events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	for rows.Next() {
		vals := make([]any, len(cols))
		for i := range vals {
			vals[i] = new(any)
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			switch x := (*v.(*any)).(type) {
			case []byte:
				b.Write(x)
			default:
				fmt.Fprint(&b, x)
			}
			b.WriteByte('|')
		}
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

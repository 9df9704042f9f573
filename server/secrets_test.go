package server_test

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// secretSet is every credential a test has seen, with the fragments of each
// that must never be written anywhere but the response that issued it.
type secretSet struct {
	t *testing.T
	// logged: fragments that must appear neither in the logs nor the audit log.
	logged map[string]string // fragment -> label
	// stored: fragments that must not appear in the database files either.
	stored map[string]string
}

func newSecretSet(t *testing.T) *secretSet {
	return &secretSet{t: t, logged: map[string]string{}, stored: map[string]string{}}
}

func (s *secretSet) fragment(frag, label string, stored bool) {
	s.t.Helper()
	if len(frag) < 16 {
		s.t.Fatalf("%s: fragment %q is too short to search for", label, frag)
	}
	s.logged[frag] = label
	if stored {
		s.stored[frag] = label
	}
}

// checksummed adds a client secret or admin token: the whole value, the
// value without its prefix, and its random body without the checksum.
func (s *secretSet) checksummed(label, v, prefix string) {
	s.t.Helper()
	body, ok := strings.CutPrefix(v, prefix)
	if !ok || len(body) < 49 {
		s.t.Fatalf("%s %q does not start with %s", label, v, prefix)
	}
	s.fragment(v, label, true)
	s.fragment(body, label+" without prefix", true)
	s.fragment(body[:43], label+" random part", true)
}

// basic adds the HTTP Basic credentials of kp as they travel in an
// Authorization header, base64 and all: a header logged whole would not
// show the secret as plain text.
func (s *secretSet) basic(label string, kp keyPair) {
	s.t.Helper()
	s.fragment(base64.StdEncoding.EncodeToString([]byte(kp.ID+":"+kp.Secret)), label+" as a Basic header", false)
	s.fragment(base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(kp.ID)+":"+url.QueryEscape(kp.Secret))), label+" as a form-encoded Basic header", false)
}

// accessToken adds an opaque access token: lk_at_<key>.<signature>. The
// database keeps the signature by design (it cannot be turned back into a
// token), so only the whole token and its key part are banned there.
func (s *secretSet) accessToken(label, v string) {
	s.t.Helper()
	body, ok := strings.CutPrefix(v, "lk_at_")
	if !ok {
		s.t.Fatalf("%s %q does not start with lk_at_", label, v)
	}
	key, sig, ok := strings.Cut(body, ".")
	if !ok {
		s.t.Fatalf("%s %q is not <key>.<signature>", label, v)
	}
	s.fragment(v, label, true)
	s.fragment(body, label+" without prefix", true)
	s.fragment(key, label+" key part", true)
	s.fragment(sig, label+" signature part", false)
}

// scan reports every fragment of set found in text.
func scan(t *testing.T, where, text string, set map[string]string) {
	t.Helper()
	for frag, label := range set {
		if i := strings.Index(text, frag); i >= 0 {
			start, end := max(0, i-120), min(len(text), i+len(frag)+40)
			t.Errorf("%s contains %s: %q", where, label, text[start:end])
		}
	}
}

// postCredentials calls an OAuth endpoint with client_secret_post.
func (e *env) postCredentials(path string, kp keyPair, f url.Values) (int, map[string]any) {
	e.t.Helper()
	f.Set("client_id", kp.ID)
	f.Set("client_secret", kp.Secret)
	status, _, out := e.form(path, keyPair{}, f)
	return status, out
}

func TestSecretsNeverLeak(t *testing.T) {
	e := newEnv(t)
	s := newSecretSet(t)
	s.fragment(testBootstrap, "bootstrap token", true)
	s.fragment(testBootstrap[1:], "bootstrap token without its first character", true)
	grant := func() url.Values { return url.Values{"grant_type": {"client_credentials"}} }
	tokenPost := func(kp keyPair) string {
		t.Helper()
		status, out := e.postCredentials("/oauth2/token", kp, grant())
		if status != http.StatusOK {
			t.Fatalf("token (post): status %d: %v", status, out)
		}
		return out["access_token"].(string)
	}

	// Integrations and their first key pairs.
	rs := e.resourceServer()
	s.checksummed("resource server secret", rs.Secret, "lk_cs_")
	s.basic("resource server", rs)
	alpha := e.createIntegration(map[string]any{"name": "alpha", "scopes": []string{"read", "write"}, "audience": []string{"api"}})
	s.checksummed("alpha secret", alpha.Secret, "lk_cs_")
	s.basic("alpha", alpha)
	beta := e.createIntegration(map[string]any{"name": "beta", "description": "batch"})
	s.checksummed("beta secret", beta.Secret, "lk_cs_")
	s.basic("beta", beta)

	// Tokens through client_secret_basic and client_secret_post.
	tokBasic := e.token(alpha, nil)
	s.accessToken("alpha token (basic)", tokBasic)
	tokScoped := e.token(alpha, url.Values{"scope": {"read"}})
	s.accessToken("alpha token (scoped)", tokScoped)
	tokPost := tokenPost(beta)
	s.accessToken("beta token (post)", tokPost)
	rsTok := tokenPost(rs)
	s.accessToken("resource server token", rsTok)

	// Introspection, both ways.
	if got := e.introspect(rs, tokBasic)["active"]; got != true {
		t.Fatalf("introspect (basic): active = %v", got)
	}
	if status, out := e.postCredentials("/oauth2/introspect", rs, url.Values{"token": {tokPost}}); status != http.StatusOK || out["active"] != true {
		t.Fatalf("introspect (post): status %d %v", status, out)
	}

	// Revocation: by the owner (both ways) and, refused, by another client.
	if status, _, out := e.form("/oauth2/revoke", alpha, url.Values{"token": {tokScoped}}); status != http.StatusOK {
		t.Fatalf("revoke (basic): status %d %v", status, out)
	}
	if status, out := e.postCredentials("/oauth2/revoke", beta, url.Values{"token": {tokPost}}); status != http.StatusOK {
		t.Fatalf("revoke (post): status %d %v", status, out)
	}
	if status, _, _ := e.form("/oauth2/revoke", beta, url.Values{"token": {tokBasic}}); status == http.StatusOK {
		t.Errorf("beta revoked alpha's token: status 200")
	}
	for _, tok := range []string{tokScoped, tokPost} {
		if got := e.introspect(rs, tok)["active"]; got != false {
			t.Errorf("revoked token: active = %v, want false", got)
		}
	}

	// Regeneration, at once and with a grace period.
	alpha2 := e.regenerate("alpha", 0)
	s.checksummed("alpha regenerated secret", alpha2.Secret, "lk_cs_")
	beta2 := e.regenerate("beta", 300)
	s.checksummed("beta regenerated secret", beta2.Secret, "lk_cs_")
	s.accessToken("alpha2 token", e.token(alpha2, nil))
	s.accessToken("beta old-pair token in grace", e.token(beta, nil))
	s.accessToken("beta2 token (post)", tokenPost(beta2))
	beta3 := e.regenerate("beta", 60)
	s.checksummed("beta second regenerated secret", beta3.Secret, "lk_cs_")
	s.accessToken("beta2 token in grace", e.token(beta2, nil))
	e.clock.Advance(61 * time.Second)

	// Failed client authentication, with secrets that are wrong in every way.
	wellFormedWrong := credential.NewClientSecret()
	s.checksummed("well-formed wrong secret", wellFormedWrong, "lk_cs_")
	mistyped := alpha2.Secret[:10] + string(alpha2.Secret[10]^1) + alpha2.Secret[11:]
	s.fragment(mistyped, "mistyped secret", true)
	s.fragment(flipLast(alpha2.Secret), "secret with a bad checksum", true)
	failures := []keyPair{
		{alpha2.ID, wellFormedWrong},
		{alpha2.ID, mistyped},
		{alpha2.ID, flipLast(alpha2.Secret)},
		{alpha2.ID, alpha2.Secret + "x"},
		{alpha.ID, alpha.Secret}, // revoked pair
		{beta.ID, beta.Secret},   // revoked pair
		{beta2.ID, beta2.Secret}, // past its grace
		{alpha.ID, beta3.Secret}, // another pair's secret
		{"lk_ci_unknownunknownunknownun", rs.Secret},
	}
	for i, kp := range failures {
		if status, _, out := e.form("/oauth2/token", kp, grant()); status != http.StatusUnauthorized {
			t.Errorf("failure %d (basic): status %d %v, want 401", i, status, out)
		}
		if status, out := e.postCredentials("/oauth2/token", kp, grant()); status != http.StatusUnauthorized {
			t.Errorf("failure %d (post): status %d %v, want 401", i, status, out)
		}
		if status, _, out := e.form("/oauth2/introspect", kp, url.Values{"token": {tokBasic}}); status != http.StatusUnauthorized {
			t.Errorf("failure %d (introspect): status %d %v, want 401", i, status, out)
		}
	}
	// Credentials in the query string, as a careless client sends them.
	q := url.Values{"client_id": {rs.ID}, "client_secret": {rs.Secret}, "token": {rsTok}, "grant_type": {"client_credentials"}}
	for _, path := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"} {
		req, err := http.NewRequest("POST", e.srv.URL+path+"?"+q.Encode(), strings.NewReader(q.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		e.do(req)
	}
	// A secret sent where a token is expected.
	for _, tok := range []string{beta3.Secret, testBootstrap} {
		if got := e.introspect(rs, tok)["active"]; got != false {
			t.Errorf("introspecting a secret: active = %v, want false", got)
		}
	}

	// Admin tokens and admins.
	root := e.newAdmin("root", storage.RoleOwner)
	s.checksummed("root's first token", root, "lk_adm_")
	for _, body := range []map[string]any{
		{"description": "laptop"}, {"description": "ci", "expires_in_days": -1}, {"description": "short", "expires_in_days": 1},
	} {
		out := e.mintAdminToken(root, body)
		s.checksummed("admin token "+body["description"].(string), out["token"].(string), "lk_adm_")
	}
	alice := e.newAdmin("alice", storage.RoleOwner)
	s.checksummed("alice's first token", alice, "lk_adm_")
	bob := e.adminAs(alice, "POST", "/admin/admins", map[string]any{"name": "bob"}, http.StatusCreated)["token"].(string)
	s.checksummed("bob's first token", bob, "lk_adm_")
	aliceTok := e.mintAdminToken(alice, map[string]any{"description": "alice's second"})
	s.checksummed("alice's second token", aliceTok["token"].(string), "lk_adm_")
	s.accessToken("token issued to an alice-made integration", e.token(
		e.adminSecret(s, alice, map[string]any{"name": "made-by-alice"}), nil))
	e.adminAs(alice, "DELETE", "/admin/tokens/"+aliceTok["id"].(string), nil, http.StatusNoContent)
	e.adminAs(bob, "PATCH", "/admin/integrations/alpha", map[string]any{"description": "patched by bob"}, http.StatusOK)
	e.mustAdmin("DELETE", "/admin/admins/bob", nil, http.StatusNoContent)
	e.mustAdmin("DELETE", "/admin/integrations/made-by-alice", nil, http.StatusNoContent)

	// Failed admin authentication.
	wrongAdmin := credential.NewAdminToken()
	s.checksummed("well-formed wrong admin token", wrongAdmin, "lk_adm_")
	s.fragment(flipLast(alice), "admin token with a bad checksum", true)
	for i, tok := range []string{
		wrongAdmin, flipLast(alice), alice + "x", testBootstrap + "x", testBootstrap[1:],
		aliceTok["token"].(string), bob, beta3.Secret,
	} {
		if status, b := e.adminCall("GET", "/admin/integrations", tok, nil); status != http.StatusUnauthorized {
			t.Errorf("admin failure %d: status %d %s, want 401", i, status, b)
		}
	}
	// Secrets in admin query strings and bodies that are refused.
	if status, b := e.adminCall("GET", "/admin/integrations?page_token="+url.QueryEscape(alice), testBootstrap, nil); status >= 500 {
		t.Errorf("admin token as page_token: status %d %s", status, b)
	}
	e.mustAdmin("GET", "/admin/audit?limit="+url.QueryEscape(beta3.Secret), nil, http.StatusBadRequest)
	e.mustAdmin("POST", "/admin/integrations", `{"name":"x","client_secret":"`+beta3.Secret+`"}`, http.StatusBadRequest)
	e.adminAs(alice, "POST", "/admin/tokens", `{"token":"`+alice+`"}`, http.StatusBadRequest)

	// The run really produced logs and audit events.
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"request"`) {
		t.Fatalf("no request lines were logged:\n%s", logs)
	}

	t.Run("logs", func(t *testing.T) {
		scan(t, "the log", logs, s.logged)
	})

	t.Run("audit log", func(t *testing.T) {
		var all strings.Builder
		pageToken := ""
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("audit paging does not end")
			}
			p := "/admin/audit?limit=3"
			if pageToken != "" {
				p += "&page_token=" + url.QueryEscape(pageToken)
			}
			status, raw := e.adminCall("GET", p, testBootstrap, nil)
			if status != http.StatusOK {
				t.Fatalf("GET %s: status %d %s", p, status, raw)
			}
			all.Write(raw)
			pageToken, _ = mustObject(t, raw)["next_page_token"].(string)
			if pageToken == "" {
				break
			}
		}
		text := all.String()
		for _, want := range []string{alpha.ID, alpha2.ID, beta3.ID, "key_pair.regenerate", "admin_token.revoke", "admin.delete"} {
			if !strings.Contains(text, want) {
				t.Errorf("audit log lacks %q; is the scan reading it?", want)
			}
		}
		scan(t, "the audit log", text, s.logged)
	})

	t.Run("database files", func(t *testing.T) {
		var db strings.Builder
		for _, suffix := range []string{"", "-wal", "-journal", "-shm"} {
			b, err := os.ReadFile(e.dbPath + suffix)
			if errors.Is(err, fs.ErrNotExist) && suffix != "" {
				continue
			}
			if err != nil {
				t.Fatalf("read %s: %v", e.dbPath+suffix, err)
			}
			db.Write(b)
		}
		text := db.String()
		for _, want := range []string{alpha.ID, beta3.ID, "alice"} {
			if !strings.Contains(text, want) {
				t.Errorf("database files lack %q; is the scan reading them?", want)
			}
		}
		scan(t, "the database files", text, s.stored)
	})
}

// adminSecret creates an integration as caller, records its secret in s
// and returns its key pair.
func (e *env) adminSecret(s *secretSet, caller string, body map[string]any) keyPair {
	e.t.Helper()
	out := e.adminAs(caller, "POST", "/admin/integrations", body, http.StatusCreated)
	kp := out["key_pair"].(map[string]any)
	pair := keyPair{ID: kp["client_id"].(string), Secret: kp["client_secret"].(string)}
	s.checksummed("secret of "+body["name"].(string), pair.Secret, "lk_cs_")
	return pair
}

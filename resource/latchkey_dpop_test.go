package resource_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/dpop"
)

// TestLatchkeyBoundTokens takes DPoP-bound tokens from a real latchkey, in
// both formats, to an API behind the middleware: the holder of the key
// gets in with a fresh proof; a thief with the token alone does not, as
// Bearer, as DPoP with a proof of the thief's own key, or by replaying the
// holder's proof.
func TestLatchkeyBoundTokens(t *testing.T) {
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			holder := holderKey(t) // and thief, another key
			proof := proofAt(t, holder, "POST", s.lk.URL+"/oauth2/token", "", s.lk.clock.Now())
			status, out := s.lk.do("POST", "/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()), func(r *http.Request) {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.SetBasicAuth(url.QueryEscape(s.client.ID), url.QueryEscape(s.client.Secret))
				r.Header.Set("DPoP", proof)
			})
			if status != http.StatusOK || out["token_type"] != "DPoP" {
				t.Fatalf("token with a proof: %d %v", status, out)
			}
			token := out["access_token"].(string)
			srv := api(t, s.options())
			u := srv.URL + "/v1/invoices"

			own := proofAt(t, holder, "GET", u, token, s.lk.clock.Now())
			a := call(t, srv, "GET", "/v1/invoices", "DPoP "+token, own)
			if a.status != http.StatusOK || a.claims.JKT != jkt(t, holder) || a.claims.Subject != s.name {
				t.Fatalf("the holder with a fresh proof: %d %s %+v", a.status, a.challenges(), a.claims)
			}
			refused(t, "the same proof again", call(t, srv, "GET", "/v1/invoices", "DPoP "+token, own),
				http.StatusUnauthorized, `error="invalid_dpop_proof"`)
			refused(t, "stolen, as Bearer", call(t, srv, "GET", "/v1/invoices", "Bearer "+token, ""),
				http.StatusUnauthorized, `error="invalid_token"`)
			stolen := proofAt(t, thief, "GET", u, token, s.lk.clock.Now())
			refused(t, "stolen, with a proof of the thief's key", call(t, srv, "GET", "/v1/invoices", "DPoP "+token, stolen),
				http.StatusUnauthorized, `error="invalid_dpop_proof"`)
			if _, err := dpop.Verify(stolen, dpop.VerifyOptions{Method: "GET", URL: u, AccessToken: token, Now: s.lk.clock.Now()}); err != nil {
				t.Fatalf("the thief's proof is itself well formed, so only the binding refuses it: %v", err)
			}
		})
	}
}

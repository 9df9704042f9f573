package resource_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchkey/latchkey/resource"
)

var formats = []string{"opaque", "jwt"}

// TestAcceptsLatchkeyTokens: a token from latchkey's /oauth2/token passes
// the middleware, which hands the handler its claims; a JWT costs no
// introspection, an opaque token one, cached.
func TestAcceptsLatchkeyTokens(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			srv := api(t, s.options())
			token := s.lk.token(s.client)
			for i := range 3 {
				a := call(t, srv, "GET", "/v1/invoices", "Bearer "+token, "")
				if a.status != http.StatusOK {
					t.Fatalf("request %d: %d %s %s", i, a.status, a.challenges(), a.body)
				}
				c := a.claims
				if c.Subject != s.name || c.ClientID != s.client.ID || !slices.Equal(c.Scopes, []string{invoicesRead}) ||
					!slices.Equal(c.Audience, []string{invoicesAudience}) || c.JKT != "" || c.ID == "" {
					t.Errorf("claims = %+v", c)
				}
				if want := s.lk.clock.Now().Add(10 * time.Hour); !c.Expiry.Equal(want) {
					t.Errorf("expiry = %v, want %v", c.Expiry, want)
				}
			}
			wantIntro := map[string]int64{"opaque": 1, "jwt": 0}[format]
			if got := s.lk.introspections.Load(); got != wantIntro {
				t.Errorf("introspections = %d, want %d", got, wantIntro)
			}
			if got, want := s.lk.jwksFetches.Load(), 1-wantIntro; got != want {
				t.Errorf("JWKS fetches = %d, want %d", got, want)
			}
		})
	}
}

// TestJWTOffline: without introspection credentials a verifier still
// accepts JWTs, and refuses opaque tokens.
func TestJWTOffline(t *testing.T) {
	s := newSetup(t, "jwt")
	srv := api(t, s.options(func(o *resource.Options) { o.ClientID, o.ClientSecret = "", "" }))
	if a := call(t, srv, "GET", "/", "Bearer "+s.lk.token(s.client), ""); a.status != http.StatusOK {
		t.Fatalf("JWT: %d %s", a.status, a.challenges())
	}
	refused(t, "opaque token", call(t, srv, "GET", "/", "Bearer lk_at_abcdefghijklmnopqrstuvwxyz.0123456789", ""),
		http.StatusUnauthorized, `error="invalid_token"`)
}

// TestExpired: a token is refused once latchkey's clock and the API's pass
// its exp (plus the leeway for a JWT checked offline).
func TestExpired(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			srv := api(t, s.options())
			token := s.lk.token(s.client)
			if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
				t.Fatalf("fresh: %d %s", a.status, a.challenges())
			}
			s.lk.clock.Advance(10*time.Hour + resource.DefaultLeeway)
			refused(t, "expired", call(t, srv, "GET", "/", "Bearer "+token, ""),
				http.StatusUnauthorized, `Bearer error="invalid_token"`)
		})
	}
}

// TestRevoked is what revocation means to a resource server: an opaque
// token is refused as soon as the introspection cache forgets it (at once
// with the cache off); a JWT verified offline is accepted until it
// expires, although latchkey itself already calls it inactive (DESIGN,
// "Opaque tokens by default").
func TestRevoked(t *testing.T) {
	t.Run("opaque, cache off", func(t *testing.T) {
		s := newSetup(t, "opaque")
		srv := api(t, s.options(func(o *resource.Options) { o.IntrospectionCacheTTL = -1 }))
		token := s.lk.token(s.client)
		if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
			t.Fatalf("before: %d", a.status)
		}
		s.lk.revoke(s.client, token)
		refused(t, "revoked", call(t, srv, "GET", "/", "Bearer "+token, ""), http.StatusUnauthorized, `error="invalid_token"`)
	})
	t.Run("opaque, cached", func(t *testing.T) {
		s := newSetup(t, "opaque")
		srv := api(t, s.options())
		token := s.lk.token(s.client)
		if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
			t.Fatalf("before: %d", a.status)
		}
		s.lk.revoke(s.client, token)
		if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
			t.Errorf("revoked, within the cache TTL: %d; the cached answer should still hold", a.status)
		}
		s.lk.clock.Advance(resource.DefaultIntrospectionCacheTTL)
		refused(t, "revoked, cache expired", call(t, srv, "GET", "/", "Bearer "+token, ""), http.StatusUnauthorized, `error="invalid_token"`)
	})
	t.Run("jwt", func(t *testing.T) {
		s := newSetup(t, "jwt")
		srv := api(t, s.options())
		token := s.lk.token(s.client)
		s.lk.revoke(s.client, token)
		if s.lk.active(s.rs, token) {
			t.Fatal("latchkey calls the revoked JWT active")
		}
		if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
			t.Errorf("revoked JWT before its expiry: %d; offline verification cannot know of revocation", a.status)
		}
		s.lk.clock.Advance(10*time.Hour + resource.DefaultLeeway)
		refused(t, "revoked JWT after its expiry", call(t, srv, "GET", "/", "Bearer "+token, ""), http.StatusUnauthorized, `error="invalid_token"`)
	})
}

// TestWrongAudience: a token for another API of the same issuer is refused.
func TestWrongAudience(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			payroll := s.lk.integration(map[string]any{
				"name": "payroll-job", "scopes": []string{invoicesRead}, "audience": []string{"https://payroll.example"},
			})
			srv := api(t, s.options())
			refused(t, "payroll token at the invoices API", call(t, srv, "GET", "/", "Bearer "+s.lk.token(payroll), ""),
				http.StatusUnauthorized, `error="invalid_token"`, "audience")
		})
	}
}

// TestMissingScope: 403 insufficient_scope naming the scopes needed
// (RFC 6750 §3.1).
func TestMissingScope(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			srv := api(t, s.options(func(o *resource.Options) { o.Scopes = []string{invoicesRead, "invoices:write"} }))
			refused(t, "read-only token at a write API", call(t, srv, "POST", "/", "Bearer "+s.lk.token(s.client), ""),
				http.StatusForbidden, `Bearer error="insufficient_scope"`, `scope="invoices:read invoices:write"`)
		})
	}
}

// TestUnboundTokenAsDPoP: latchkey's bearer tokens cannot be sent with the
// DPoP scheme, even with a good proof (RFC 9449 §7.2).
func TestUnboundTokenAsDPoP(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			srv := api(t, s.options())
			token := s.lk.token(s.client)
			refused(t, "bearer token as DPoP", call(t, srv, "GET", "/", "DPoP "+token, proofFor(t, holderKey(t), "GET", srv.URL+"/", token)),
				http.StatusUnauthorized, `DPoP algs="ES256 EdDSA RS256 PS256", error="invalid_token"`)
		})
	}
}

// TestIntrospectionCache: the cache is bounded, keeps inactive answers
// briefly, and never serves a token past its exp.
func TestIntrospectionCache(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		s := newSetup(t, "opaque")
		srv := api(t, s.options(func(o *resource.Options) { o.IntrospectionCacheMax = 2 }))
		tokens := []string{s.lk.token(s.client), s.lk.token(s.client), s.lk.token(s.client)}
		for _, tok := range append(tokens, tokens...) {
			if a := call(t, srv, "GET", "/", "Bearer "+tok, ""); a.status != http.StatusOK {
				t.Fatalf("%d", a.status)
			}
		}
		// Three tokens through a cache of two, twice: at least one of the
		// second round was forgotten.
		if n := s.lk.introspections.Load(); n < 4 {
			t.Errorf("introspections = %d; a cache of 2 cannot hold 3 tokens", n)
		}
	})
	t.Run("inactive, briefly", func(t *testing.T) {
		s := newSetup(t, "opaque")
		srv := api(t, s.options())
		junk := "Bearer lk_at_" + strings.Repeat("A", 43) + "." + strings.Repeat("B", 43)
		for range 3 {
			refused(t, "unknown token", call(t, srv, "GET", "/", junk, ""), http.StatusUnauthorized, `error="invalid_token"`)
		}
		if n := s.lk.introspections.Load(); n != 1 {
			t.Errorf("introspections = %d, want 1: the inactive answer is cached", n)
		}
		s.lk.clock.Advance(resource.DefaultInactiveCacheTTL)
		call(t, srv, "GET", "/", junk, "")
		if n := s.lk.introspections.Load(); n != 2 {
			t.Errorf("introspections = %d, want 2: the inactive answer is cached only briefly", n)
		}
	})
	t.Run("junk stays here", func(t *testing.T) {
		s := newSetup(t, "opaque")
		srv := api(t, s.options())
		for _, junk := range []string{"lk_at_short", "lk_at_" + strings.Repeat("A", 40) + "+/~", "lk_at_" + strings.Repeat("A", 600)} {
			refused(t, junk, call(t, srv, "GET", "/", "Bearer "+junk, ""), http.StatusUnauthorized, `error="invalid_token"`)
		}
		if n := s.lk.introspections.Load(); n != 0 {
			t.Errorf("introspections = %d; junk that is not shaped like a token must not reach latchkey", n)
		}
	})
	t.Run("not past exp", func(t *testing.T) {
		s := newSetup(t, "opaque")
		short := s.lk.integration(map[string]any{
			"name": "short-lived", "scopes": []string{invoicesRead}, "audience": []string{invoicesAudience},
			"token_lifetime_seconds": 60,
		})
		srv := api(t, s.options(func(o *resource.Options) { o.IntrospectionCacheTTL = time.Hour; o.Leeway = time.Second }))
		token := s.lk.token(short)
		if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusOK {
			t.Fatalf("%d", a.status)
		}
		s.lk.clock.Advance(time.Minute)
		refused(t, "past exp, within the cache TTL", call(t, srv, "GET", "/", "Bearer "+token, ""), http.StatusUnauthorized, `error="invalid_token"`)
	})
}

// TestLatchkeyUnreachable: when latchkey cannot be asked the API answers
// 503, not 401 (the token may be fine) and not 500.
func TestLatchkeyUnreachable(t *testing.T) {
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			s := newSetup(t, format)
			token := s.lk.token(s.client)
			srv := api(t, s.options(func(o *resource.Options) {
				o.JWKSURL = "http://127.0.0.1:1/jwks.json"
				o.IntrospectionURL = "http://127.0.0.1:1/introspect"
			}))
			if a := call(t, srv, "GET", "/", "Bearer "+token, ""); a.status != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", a.status)
			}
		})
	}
}

// TestWrongIntrospectionCredentials: an API whose own key pair latchkey
// refuses answers 503: no client could fix that by trying another token.
func TestWrongIntrospectionCredentials(t *testing.T) {
	s := newSetup(t, "opaque")
	srv := api(t, s.options(func(o *resource.Options) { o.ClientSecret = "wrong" }))
	if a := call(t, srv, "GET", "/", "Bearer "+s.lk.token(s.client), ""); a.status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", a.status)
	}
}

// TestIntrospectionAuthenticate: Authenticate replaces the key pair, here
// with client_secret_post, as it could with a private_key_jwt assertion.
func TestIntrospectionAuthenticate(t *testing.T) {
	s := newSetup(t, "opaque")
	srv := api(t, s.options(func(o *resource.Options) {
		o.ClientID, o.ClientSecret = "", ""
		o.Authenticate = func(_ *http.Request, form url.Values) error {
			form.Set("client_id", s.rs.ID)
			form.Set("client_secret", s.rs.Secret)
			return nil
		}
	}))
	if a := call(t, srv, "GET", "/", "Bearer "+s.lk.token(s.client), ""); a.status != http.StatusOK {
		t.Errorf("%d %s %s", a.status, a.challenges(), a.body)
	}
}

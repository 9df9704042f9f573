package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/server"
)

// audOf is an introspection's or a JWT's aud as a list.
func audOf(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// TestResourceIndicators: resource (RFC 8707 §2) asks for an audience
// within the integration's allowed audience; the granted audience is every
// resource and audience value asked for, in the JWT and at introspection.
// A resource outside, or not an absolute URI without fragment, is 400
// invalid_target; more than 20 values in all, invalid_request.
func TestResourceIndicators(t *testing.T) {
	const invoices, payroll, ledger = "https://invoices.example.com/", "https://payroll.example.com/", "urn:example:ledger"
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			e := newOAuthEnv(t, func(o *server.Options) { o.TokenFormat = format })
			rs := e.resourceServer()
			kp := e.createIntegration(map[string]any{"name": "job", "audience": []string{invoices, payroll, ledger}})
			// An audience may hold values that are no URI; asked for as a
			// resource they are malformed all the same.
			loose := e.createIntegration(map[string]any{"name": "loose", "audience": []string{"invoices-api", invoices + "#x", "/invoices"}})

			granted := []struct {
				name  string
				extra url.Values
				want  []string
			}{
				{"one resource", url.Values{"resource": {payroll}}, []string{payroll}},
				{"resource repeated", url.Values{"resource": {invoices, ledger}}, []string{invoices, ledger}},
				{"the same resource twice", url.Values{"resource": {invoices, invoices}}, []string{invoices}},
				{"resource and audience", url.Values{"audience": {payroll}, "resource": {invoices}}, []string{payroll, invoices}},
				{"neither: the whole audience", nil, []string{invoices, payroll, ledger}},
			}
			for _, tt := range granted {
				t.Run(tt.name, func(t *testing.T) {
					tok := e.token(kp, tt.extra)
					if got := audOf(e.introspect(rs, tok)["aud"]); !slices.Equal(got, tt.want) {
						t.Errorf("introspection aud = %v, want %v", got, tt.want)
					}
					if format == "jwt" {
						if _, c, _ := e.mustVerify(tok); !slices.Equal(c.Audience, tt.want) {
							t.Errorf("JWT aud = %v, want %v", c.Audience, tt.want)
						}
					}
				})
			}

			many := url.Values{}
			for i := range 21 {
				many.Add("resource", fmt.Sprintf("https://r%d.example.com/", i))
			}
			const malformed = "absolute URI"
			refused := []struct {
				name  string
				kp    keyPair
				extra url.Values
				code  string
				desc  string // in error_description
			}{
				{"outside the allowed audience", kp, url.Values{"resource": {"https://hr.example.com/"}}, "invalid_target", "not in this integration's audience"},
				{"one of two outside", kp, url.Values{"resource": {invoices, "https://hr.example.com/"}}, "invalid_target", "not in this integration's audience"},
				{"not a URI", loose, url.Values{"resource": {"invoices-api"}}, "invalid_target", malformed},
				{"relative URI", loose, url.Values{"resource": {"/invoices"}}, "invalid_target", malformed},
				{"fragment", loose, url.Values{"resource": {invoices + "#x"}}, "invalid_target", malformed},
				{"empty", kp, url.Values{"resource": {""}}, "invalid_target", malformed},
				{"space inside", kp, url.Values{"resource": {"https://a b/"}}, "invalid_target", malformed},
				{"21 values", kp, many, "invalid_request", "At most 20"},
			}
			for _, tt := range refused {
				t.Run(tt.name, func(t *testing.T) {
					f := url.Values{"grant_type": {"client_credentials"}}
					for k, v := range tt.extra {
						f[k] = v
					}
					status, h, out := e.form("/oauth2/token", tt.kp, f)
					checkOAuthError(t, status, h, out, http.StatusBadRequest, tt.code)
					if d, _ := out["error_description"].(string); !strings.Contains(d, tt.desc) {
						t.Errorf("error_description = %q, want it to say %q", d, tt.desc)
					}
				})
			}
			t.Run("the same values as audience", func(t *testing.T) {
				tok := e.token(loose, url.Values{"audience": {"invoices-api"}})
				if got := audOf(e.introspect(rs, tok)["aud"]); !slices.Equal(got, []string{"invoices-api"}) {
					t.Errorf("aud = %v, want [invoices-api]", got)
				}
			})
		})
	}
}

// TestIntrospectionAudience: a resource server with introspection_audience
// sees as active only the tokens whose aud holds one of its values; every
// other token is exactly {"active": false} to it, as an unknown one. A
// resource server without one sees every token.
func TestIntrospectionAudience(t *testing.T) {
	const invoices, payroll = "https://invoices.example.com/", "https://payroll.example.com/"
	e := newOAuthEnv(t)
	all := e.resourceServer()
	bound := e.createIntegration(map[string]any{"name": "invoices-api", "can_introspect": true,
		"introspection_audience": []string{invoices}})
	kp := e.createIntegration(map[string]any{"name": "job", "audience": []string{invoices, payroll}})
	plain := e.createIntegration(map[string]any{"name": "plain"})

	tests := []struct {
		name    string
		kp      keyPair
		extra   url.Values
		visible bool
	}{
		{"its audience", kp, url.Values{"resource": {invoices}}, true},
		{"its audience among others", kp, nil, true},
		{"another audience", kp, url.Values{"resource": {payroll}}, false},
		{"no audience: the issuer", plain, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := e.token(tt.kp, tt.extra)
			got := e.introspect(bound, tok)
			if tt.visible {
				if got["active"] != true || !slices.Contains(audOf(got["aud"]), invoices) {
					t.Errorf("introspection = %v, want active with aud holding %s", got, invoices)
				}
			} else {
				checkInactive(t, got)
			}
			if got := e.introspect(all, tok)["active"]; got != true {
				t.Errorf("a resource server without introspection_audience: active = %v, want true", got)
			}
		})
	}

	t.Run("the issuer listed: tokens granted no audience", func(t *testing.T) {
		issuerRS := e.createIntegration(map[string]any{"name": "issuer-api", "can_introspect": true,
			"introspection_audience": []string{oauthIssuer}})
		if got := e.introspect(issuerRS, e.token(plain, nil)); got["active"] != true || got["aud"] != oauthIssuer {
			t.Errorf("introspection = %v, want active with aud %s", got, oauthIssuer)
		}
		checkInactive(t, e.introspect(issuerRS, e.token(kp, nil)))
	})
}

package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
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
			refused := []struct {
				name  string
				extra url.Values
				code  string
			}{
				{"outside the allowed audience", url.Values{"resource": {"https://hr.example.com/"}}, "invalid_target"},
				{"one of two outside", url.Values{"resource": {invoices, "https://hr.example.com/"}}, "invalid_target"},
				{"relative URI", url.Values{"resource": {"/invoices"}}, "invalid_target"},
				{"fragment", url.Values{"resource": {invoices + "#x"}}, "invalid_target"},
				{"empty", url.Values{"resource": {""}}, "invalid_target"},
				{"space inside", url.Values{"resource": {"https://a b/"}}, "invalid_target"},
				{"21 values", many, "invalid_request"},
			}
			for _, tt := range refused {
				t.Run(tt.name, func(t *testing.T) {
					f := url.Values{"grant_type": {"client_credentials"}}
					for k, v := range tt.extra {
						f[k] = v
					}
					status, h, out := e.form("/oauth2/token", kp, f)
					checkOAuthError(t, status, h, out, http.StatusBadRequest, tt.code)
				})
			}
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
}

package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/latchkey/latchkey/storage"
)

// TestDashboardKeyless registers an integration with its own keys and
// moves a secret one to keys, in the dashboard: the key fields appear for
// private_key_jwt, a missing or malformed key set is named at its field,
// the new pair is shown without a secret and without the one-time ritual,
// the detail view names the keys by kid and says DPoP is required, and a
// switch that deletes secrets is warned about before it is saved.
func TestDashboardKeyless(t *testing.T) {
	e := newEnv(t)
	e.failOnServerErrors()
	b := newBrowser(t, 1280, 800)
	root := e.newAdmin("root", storage.RoleOwner)
	e.createIntegration(map[string]any{"name": "mover"})
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(publicJWKS(t, key, "deploy-2026"))
	b.signIn(t, e.srv.URL, root)

	visible := func(sel string) bool {
		return b.eval(t, fmt.Sprintf(`String(!!document.querySelector(%q)?.checkVisibility())`, sel)) == "true"
	}
	setValue := func(sel, v string) {
		b.eval(t, fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.value = %q; el.dispatchEvent(new Event('change', { bubbles: true })); el.dispatchEvent(new Event('input', { bubbles: true })); return ''; })()`, sel, v))
	}

	b.do(t, "open the new-integration form",
		chromedp.Click(chromedp.CSS("#new-integration")),
		chromedp.WaitVisible(chromedp.CSS("#ig-name")),
		chromedp.SendKeys(chromedp.CSS("#ig-name"), "deployer"),
	)
	if visible("#ig-keys") {
		t.Error("the key fields show for a secret integration")
	}
	setValue("#ig-auth", "private_key_jwt")
	if !visible("#ig-keys") {
		t.Fatal("choosing private_key_jwt does not show the key fields")
	}
	if visible("#ig-auth-warning") {
		t.Error("a new integration is warned about deleting secrets it does not have")
	}
	fieldError := func(sel string) string {
		js := fmt.Sprintf(`(() => { const f = document.querySelector(%q); if (f.getAttribute('aria-invalid') !== 'true') return ''; return (f.getAttribute('aria-describedby') ?? '').split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' '); })()`, sel)
		var got string
		_, _ = chromedp.Run(b.ctx, chromedp.Poll[bool](fmt.Sprintf(`document.querySelector(%q).getAttribute('aria-invalid') === 'true'`, sel), chromedp.WithPollingTimeout(3*time.Second)))
		got = b.eval(t, js)
		return got
	}
	b.do(t, "submit without keys", chromedp.Click(chromedp.CSS("#integration-submit")))
	if got := fieldError("#ig-jwks"); !strings.Contains(got, "public keys") {
		t.Errorf("no keys: the key field says %q", got)
	}
	setValue("#ig-jwks", "{not json")
	b.do(t, "submit a malformed key set", chromedp.Click(chromedp.CSS("#integration-submit")))
	if got := fieldError("#ig-jwks"); !strings.Contains(got, "JSON Web Key Set") {
		t.Errorf("malformed keys: the key field says %q", got)
	}
	setValue("#ig-jwks", string(jwks))
	b.do(t, "require DPoP and create it",
		chromedp.Click(chromedp.CSS("#ig-dpop")),
		chromedp.Click(chromedp.CSS("#integration-submit")),
		chromedp.WaitVisible(chromedp.CSS("#secret-client-id")),
	)
	if b.eval(t, `String(!!document.querySelector('#secret-client-secret'))`) != "false" || visible("#secret-notice") || visible("#secret-stored") {
		t.Error("a keyless pair is shown with a secret field, or the one-time warning and confirmation")
	}
	clientID := b.value(t, "#secret-client-id")
	b.do(t, "Escape closes it: nothing is lost", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#secret-dialog")))

	got := e.mustAdmin("GET", "/admin/integrations/deployer", nil, http.StatusOK)
	if got["token_endpoint_auth_method"] != "private_key_jwt" || got["require_dpop"] != true ||
		got["key_pair"].(map[string]any)["client_id"] != clientID || !strings.Contains(fmt.Sprint(got["jwks"]), "deploy-2026") {
		t.Fatalf("created through the dashboard: %v", got)
	}

	b.do(t, "open its detail view",
		chromedp.Navigate(e.srv.URL+"/admin/#integration/deployer"),
		chromedp.WaitVisible(chromedp.CSS("#detail-body .pair")))
	settings := b.eval(t, `document.querySelector('#detail-body').textContent`)
	for _, want := range []string{"its own keys", "deploy-2026", "required"} {
		if !strings.Contains(settings, want) {
			t.Errorf("the detail view does not say %q: %q", want, settings)
		}
	}

	// Moving a secret integration to keys: warned, then saved.
	b.do(t, "edit mover",
		chromedp.Navigate(e.srv.URL+"/admin/#integration/mover"),
		chromedp.WaitVisible(chromedp.CSS(`#detail-actions button[data-action="edit"]`)),
		chromedp.Click(chromedp.CSS(`#detail-actions button[data-action="edit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#ig-auth")),
	)
	setValue("#ig-auth", "private_key_jwt")
	if !visible("#ig-auth-warning") {
		t.Error("switching a secret integration to keys is not warned about")
	}
	setValue("#ig-jwks", string(jwks))
	b.do(t, "save the switch", chromedp.Click(chromedp.CSS("#integration-submit")), chromedp.WaitNotVisible(chromedp.CSS("#integration-dialog")))
	b.toastSays(t, "mover saved")
	if got := e.mustAdmin("GET", "/admin/integrations/mover", nil, http.StatusOK); got["token_endpoint_auth_method"] != "private_key_jwt" {
		t.Errorf("after the switch: %v", got)
	}
	if p := b.problems(); len(p) > 0 {
		t.Errorf("console errors or CSP violations: %q", p)
	}
}

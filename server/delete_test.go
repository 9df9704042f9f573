package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkey/latchkey/storage/storagetest"
)

// TestDeleteLargeIntegrationUnderLoad deletes an integration holding
// 120,000 tokens while another integration asks for tokens from four
// goroutines, on a real database file. Every one of those requests is
// issued; the moment the DELETE has answered, the deleted integration's
// tokens introspect inactive, its key pair is refused, it is in no listing
// and its name is free; and the janitor's Purge then deletes every row it
// left (the DELETE itself deleted none of them), and nothing else.
func TestDeleteLargeIntegrationUnderLoad(t *testing.T) {
	const held = 120_000
	e := newEnv(t)
	e.failOnServerErrors()
	rs := e.resourceServer()
	doomed := e.createIntegration(map[string]any{"name": "doomed", "scopes": []string{"doomed:only"}})
	doomedTok := e.token(doomed, nil)
	now := e.clock.Now()
	storagetest.SeedTokens(t, e.dbPath, doomed.ID, held, now, now.Add(10*time.Hour))
	other := e.createIntegration(map[string]any{"name": "other"})
	otherTok := e.token(other, nil)

	var (
		issued atomic.Int64
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		// running closes once the load has been issued tokens, so the
		// deletion happens among requests, not before them.
		running = make(chan struct{})
		once    sync.Once
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a := e.post(http.DefaultClient, "/oauth2/token", other, grant); a.status != http.StatusOK {
					t.Errorf("token for another integration during the delete: %d %v", a.status, a.body)
					return
				}
				if issued.Add(1) >= 20 {
					once.Do(func() { close(running) })
				}
			}
		})
	}
	<-running

	e.mustAdmin("DELETE", "/admin/integrations/doomed", nil, http.StatusNoContent)
	before := issued.Load()
	checkInactive(t, e.introspect(rs, doomedTok))
	status, h, body := e.form("/oauth2/token", doomed, url.Values{"grant_type": {"client_credentials"}})
	checkOAuthError(t, status, h, body, http.StatusUnauthorized, "invalid_client")
	e.mustAdmin("GET", "/admin/integrations/doomed", nil, http.StatusNotFound)
	for _, item := range e.mustAdmin("GET", "/admin/integrations", nil, http.StatusOK)["items"].([]any) {
		if name := item.(map[string]any)["name"]; name != "other" && name != "resource-server" {
			t.Errorf("list after delete holds %v", name)
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/.well-known/oauth-authorization-server", nil)
	if _, _, b := e.do(req); strings.Contains(string(b), "doomed:only") {
		t.Errorf("metadata after delete still lists the deleted integration's scope: %s", b)
	}
	reborn := e.createIntegration(map[string]any{"name": "doomed"})
	rebornTok := e.token(reborn, nil)

	// The load goes on after the deletion too before it stops.
	for issued.Load() < before+20 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()

	n, err := e.store.Purge(t.Context(), 1<<20)
	// The seeded tokens, the one issued over HTTP, the key pair and the
	// integration's row.
	if want := int64(held + 1 + 1 + 1); err != nil || n != want {
		t.Errorf("Purge = %d, %v; want %d rows", n, err, want)
	}
	// What is left is the live integrations' rows, exactly.
	for _, c := range []struct {
		table string
		want  int64
	}{{"access_tokens", issued.Load() + 2}, {"key_pairs", 3}, {"integrations", 3}} {
		var got int64
		if err := e.rawDB().QueryRow("SELECT COUNT(*) FROM " + c.table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: %d rows after Purge, want %d", c.table, got, c.want)
		}
	}
	for _, tok := range []string{otherTok, rebornTok} {
		if got := e.introspect(rs, tok)["active"]; got != true {
			t.Errorf("a live integration's token after Purge: active = %v, want true", got)
		}
	}
}

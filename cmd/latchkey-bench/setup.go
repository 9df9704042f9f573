package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// setup creates, through the admin API, the integrations a load run needs,
// and deletes them again. Everything here runs once per run, so it uses
// net/http.
type setup struct {
	adminURL, adminToken, url string
	hc                        *http.Client
	suffix                    string
	created                   []string
	log                       io.Writer
	// noTokenCap creates every integration with token_rate_per_minute 0,
	// so that the server's cap on tokens issued per integration is not
	// what a run measures.
	noTokenCap bool
}

// newSetup returns a setup whose connections leave from source (nil: the
// system's choice), like the load's.
func newSetup(adminURL, token, baseURL string, source net.IP, log io.Writer) *setup {
	hc := &http.Client{Timeout: 30 * time.Second}
	if source != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = sourceDialer(source, 30*time.Second).DialContext
		hc.Transport = tr
	}
	return &setup{
		adminURL: strings.TrimRight(adminURL, "/"), adminToken: token, url: strings.TrimRight(baseURL, "/"),
		hc: hc, suffix: randomSuffix(), log: log,
	}
}

type keyPair struct{ id, secret string }

// integration creates the integration prefix-<suffix> with the given
// fields and returns its key pair.
func (s *setup) integration(ctx context.Context, prefix string, fields map[string]any) (keyPair, error) {
	name := prefix + "-" + s.suffix
	body := map[string]any{"name": name, "description": "created by latchkey-bench; deleted when it ends"}
	for k, v := range fields {
		body[k] = v
	}
	if s.noTokenCap {
		body["token_rate_per_minute"] = 0
	}
	var out struct {
		KeyPair struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		} `json:"key_pair"`
	}
	if err := s.admin(ctx, "POST", "/admin/integrations", body, http.StatusCreated, &out); err != nil {
		return keyPair{}, fmt.Errorf("create integration %s: %w", name, err)
	}
	s.created = append(s.created, name)
	if out.KeyPair.ClientID == "" || out.KeyPair.ClientSecret == "" {
		return keyPair{}, fmt.Errorf("create integration %s: no key pair in the answer", name)
	}
	return keyPair{out.KeyPair.ClientID, out.KeyPair.ClientSecret}, nil
}

// regenerate makes a new key pair for the integration prefix-<suffix>,
// revoking the current one at once (no grace), and returns the new pair.
func (s *setup) regenerate(ctx context.Context, prefix string) (keyPair, error) {
	name := prefix + "-" + s.suffix
	var out struct {
		ClientID          string     `json:"client_id"`
		ClientSecret      string     `json:"client_secret"`
		CreatedAt         time.Time  `json:"created_at"`
		PreviousExpiresAt *time.Time `json:"previous_expires_at"`
	}
	if err := s.admin(ctx, "POST", "/admin/integrations/"+url.PathEscape(name)+"/key-pair", map[string]any{}, http.StatusCreated, &out); err != nil {
		return keyPair{}, fmt.Errorf("regenerate the key pair of %s: %w", name, err)
	}
	if out.ClientID == "" || out.ClientSecret == "" {
		return keyPair{}, fmt.Errorf("regenerate the key pair of %s: no new pair in the answer", name)
	}
	// The contract says null; some versions answer the moment of the
	// regeneration itself, which revokes the old pair at once all the same.
	if p := out.PreviousExpiresAt; p != nil && p.After(out.CreatedAt) {
		return keyPair{}, fmt.Errorf("regenerate the key pair of %s: the old pair lives on until %s; want it revoked at once", name, p)
	}
	return keyPair{out.ClientID, out.ClientSecret}, nil
}

// cleanup deletes every integration the run created, and with them the
// tokens it was issued.
func (s *setup) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, name := range s.created {
		err := s.admin(ctx, "DELETE", "/admin/integrations/"+url.PathEscape(name), nil, http.StatusNoContent, nil)
		if err != nil {
			fmt.Fprintf(s.log, "latchkey-bench: could not delete integration %s: %v\n", name, err)
		}
	}
	s.created = nil
}

func (s *setup) admin(ctx context.Context, method, path string, body any, want int, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.adminURL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	status, b, err := s.do(req)
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d: %s", method, path, status, snippet(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// oauth posts form to an OAuth endpoint with the key pair's Basic auth.
func (s *setup) oauth(ctx context.Context, path string, kp keyPair, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", s.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(kp.id), url.QueryEscape(kp.secret))
	return s.do(req)
}

// token gets an access token for kp.
func (s *setup) token(ctx context.Context, kp keyPair) (string, error) {
	status, b, err := s.oauth(ctx, "/oauth2/token", kp, url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		return "", fmt.Errorf("get a token: %w", err)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if status != http.StatusOK || json.Unmarshal(b, &out) != nil || out.AccessToken == "" {
		return "", fmt.Errorf("get a token: status %d: %s", status, snippet(b))
	}
	return out.AccessToken, nil
}

// checkActive makes sure the token introspects active, so that the run
// measures the lookup of a live token and not the cheap "inactive" answer.
func (s *setup) checkActive(ctx context.Context, rs keyPair, token string) error {
	status, b, err := s.oauth(ctx, "/oauth2/introspect", rs, url.Values{"token": {token}})
	if err != nil {
		return fmt.Errorf("introspect: %w", err)
	}
	var out struct {
		Active bool `json:"active"`
	}
	if status != http.StatusOK || json.Unmarshal(b, &out) != nil || !out.Active {
		return fmt.Errorf("introspect the fresh token: status %d: %s (want active)", status, snippet(b))
	}
	return nil
}

func (s *setup) do(req *http.Request) (int, []byte, error) {
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

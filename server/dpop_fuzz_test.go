package server_test

import (
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/latchkey/latchkey/dpop"
	"github.com/latchkey/latchkey/server/oauth"
)

// FuzzDPoPProof posts token requests with the real credentials and a
// fuzzed DPoP header: a fresh valid proof, the same with one byte
// replaced, a fuzzed string, or either with a second DPoP header.
//
// Invariants: the handler never panics nor logs an error; the answer is
// 200 or 400 invalid_dpop_proof; a 200 is a DPoP token, given only to one
// proof that the dpop package, judging as the server does, finds valid,
// with a jti not seen before; and such a proof always gets its 200.
func FuzzDPoPProof(f *testing.F) {
	fs := newFuzzServer(f)
	kp := fs.e.createIntegration(map[string]any{"name": "fuzz-dpop"})
	key := newProofKey(f)
	var mu sync.Mutex
	seen := map[string]bool{}

	// sel bits: 0 replace a byte of the fresh proof, 1 send raw instead, 2
	// add a second DPoP header; 8-23 the position, 24-31 the byte.
	for _, s := range []struct {
		sel uint32
		raw string
	}{
		{0, ""},
		{1 | 5<<8 | 'x'<<24, ""},
		{1 | 40<<8 | 'A'<<24, ""},
		{1 | 200<<8 | '.'<<24, ""},
		{2, "a.b.c"},
		{2, ""},
		{2, "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6Im5vbmUifQ.e30."},
		{4, ""},
	} {
		f.Add(s.sel, s.raw)
	}

	f.Fuzz(func(t *testing.T, sel uint32, raw string) {
		fuzzSkipLong(t, 9<<10, raw)
		now := fs.e.clock.Now()
		proof, err := dpop.NewProof(key, "POST", tokenURL, "", "", now)
		if err != nil {
			t.Fatal(err)
		}
		if sel&1 == 1 {
			b := []byte(proof)
			b[int(sel>>8&0xffff)%len(b)] = byte(sel >> 24)
			proof = string(b)
		}
		if sel&2 == 2 {
			proof = raw
		}
		req := newFuzzRequest(t, "POST", "/oauth2/token", url.Values{"grant_type": {"client_credentials"}}.Encode())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(kp.ID), url.QueryEscape(kp.Secret))
		req.Header.Add("DPoP", proof)
		two := sel&4 == 4
		if two {
			req.Header.Add("DPoP", proof)
		}
		r := fs.serve(t, req)

		mu.Lock()
		defer mu.Unlock()
		p, verr := dpop.Verify(proof, dpop.VerifyOptions{Method: "POST", URL: tokenURL, Now: now, Algs: oauth.DPoPAlgorithms})
		fresh := verr == nil && !two && !seen[p.JTI]
		switch r.status {
		case http.StatusOK:
			if !fresh {
				t.Fatalf("token for a proof that is invalid (%v), replayed or doubled (%v): %q", verr, two, proof)
			}
			if got := fuzzJSONObject(t, "token", r)["token_type"]; got != "DPoP" {
				t.Fatalf("token_type = %v, want DPoP", got)
			}
			seen[p.JTI] = true
		case http.StatusBadRequest:
			if got := checkFuzzOAuthError(t, "token", r)["error"]; got != "invalid_dpop_proof" {
				t.Fatalf("error = %v, want invalid_dpop_proof", got)
			}
			if fresh {
				t.Fatalf("a valid, fresh proof refused: %s", r.body)
			}
		default:
			t.Fatalf("status %d, want 200 or 400; body %s", r.status, r.body)
		}
	})
}

package server_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/latchkey/latchkey/server"
)

// benchClient keeps enough idle connections for RunParallel's goroutines,
// so the benchmark measures latchkey, not TCP handshakes.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func benchPost(b *testing.B, u string, kp keyPair, body string) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(kp.ID, kp.Secret)
	resp, err := benchClient.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Errorf("status %d", resp.StatusCode)
	}
}

// postParallel posts body to u as kp from 16 goroutines (8 per core) for
// b.N requests in all, and reports the throughput in unit.
func postParallel(b *testing.B, u string, kp keyPair, body, unit string) {
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, u, kp, body)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkToken measures /oauth2/token end to end over loopback HTTP on a
// real SQLite file: client authentication, token generation (an HMAC, or a
// JWT signature), the write of the token row. Every format runs in one
// benchmark so the figures compare like with like.
func BenchmarkToken(b *testing.B) {
	formats := []struct{ name, format, alg string }{
		{"opaque", "opaque", ""},
		{"jwt-ES256", "jwt", "ES256"},
		{"jwt-EdDSA", "jwt", "EdDSA"},
		{"jwt-RS256", "jwt", "RS256"},
	}
	for _, f := range formats {
		b.Run(f.name, func(b *testing.B) {
			e := newEnv(b, func(o *server.Options) { o.TokenFormat, o.SigningAlgorithm = f.format, f.alg })
			kp := e.createIntegration(map[string]any{"name": "bench", "scopes": []string{"read", "write"}})
			u := e.srv.URL + "/oauth2/token"
			body := url.Values{"grant_type": {"client_credentials"}}.Encode()
			postParallel(b, u, kp, body, "tokens/s")
		})
	}
}

// BenchmarkIntrospect measures /oauth2/introspect of an active token.
func BenchmarkIntrospect(b *testing.B) {
	e := newEnv(b)
	rs := e.resourceServer()
	kp := e.createIntegration(map[string]any{"name": "bench"})
	body := url.Values{"token": {e.token(kp, nil)}}.Encode()
	u := e.srv.URL + "/oauth2/introspect"
	postParallel(b, u, rs, body, "introspections/s")
}

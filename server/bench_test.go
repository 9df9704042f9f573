package server_test

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage/storagetest"
)

// benchClient keeps enough idle connections for RunParallel's goroutines,
// so the benchmark measures latchkey, not TCP handshakes.
var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

func benchPost(b *testing.B, u string, kp keyPair, body string) {
	benchPostWith(b, u, kp, body, "")
}

// benchPostWith is benchPost with a DPoP header, when proof is not empty.
func benchPostWith(b *testing.B, u string, kp keyPair, body, proof string) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if kp.ID != "" {
		req.SetBasicAuth(kp.ID, kp.Secret)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
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
	// private_key_jwt, opaque tokens: the assertion check (a lookup, a
	// signature verification, the jti's insert) in place of the HMAC of
	// a secret. The assertions are signed before the clock starts, as a
	// client would sign them on its own machine.
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		b.Run("private_key_jwt-"+alg, func(b *testing.B) {
			e := newEnv(b)
			s := newSigner(b, alg, "bench")
			kp := e.keyless("bench", s)
			e.clock.Live()
			bodies := make([]string, b.N)
			for i := range bodies {
				bodies[i] = url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionType},
					"client_assertion": {s.sign(b, e.claimsFor(kp.ID), nil)}}.Encode()
			}
			var next atomic.Int64
			u := e.srv.URL + "/oauth2/token"
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchPost(b, u, keyPair{}, bodies[next.Add(1)-1])
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// BenchmarkTokenDPoP measures /oauth2/token with a DPoP proof (RFC 9449):
// a bearer request's work, plus the proof's checks and signature, and the
// write of its jti. Every request needs a proof of its own; they are made
// before the timer starts, as a client makes its own, so the figure is
// the server's alone. The test server's clock stands still, so none grows
// stale.
func BenchmarkTokenDPoP(b *testing.B) {
	for _, f := range []struct{ name, format string }{{"opaque", "opaque"}, {"jwt-ES256", "jwt"}} {
		b.Run(f.name, func(b *testing.B) {
			e := newEnv(b, func(o *server.Options) { o.TokenFormat = f.format })
			kp := e.createIntegration(map[string]any{"name": "bench", "scopes": []string{"read", "write"}})
			u := e.srv.URL + "/oauth2/token"
			body := url.Values{"grant_type": {"client_credentials"}}.Encode()
			key := newProofKey(b)
			proofs := make([]string, b.N)
			for i := range proofs {
				proofs[i] = e.proofFor(key, tokenURL)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					benchPostWith(b, u, kp, body, proofs[next.Add(1)-1])
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
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

// BenchmarkFailedClientAuth measures one failed authentication at a time,
// for each way of failing, with the failure limits off. A known client ID
// with a wrong secret and an unknown one must cost the same (to within
// the noise): otherwise the time of a 401 tells which client IDs exist.
func BenchmarkFailedClientAuth(b *testing.B) {
	e := newEnv(b)
	kp := e.createIntegration(map[string]any{"name": "bench"})
	revoked := e.createIntegration(map[string]any{"name": "old"})
	e.regenerate("old", 0)
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	u := e.srv.URL + "/oauth2/token"
	cases := []struct {
		name string
		kp   keyPair
	}{
		{"known-id-wrong-secret", keyPair{ID: kp.ID, Secret: credential.NewClientSecret()}},
		{"unknown-id", keyPair{ID: credential.NewClientID(), Secret: credential.NewClientSecret()}},
		{"revoked-id", keyPair{ID: revoked.ID, Secret: credential.NewClientSecret()}},
		{"bad-checksum", keyPair{ID: kp.ID, Secret: mistyped(kp.Secret)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest("POST", u, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(c.kp.ID, c.kp.Secret)
				resp, err := benchClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					b.Fatalf("status %d, want 401", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkFailedAssertion is BenchmarkFailedClientAuth for client
// assertions: a forged one for a known client ID (a lookup and a failed
// verification) and one for an unknown client ID (a lookup and a
// verification against a stand-in key) must cost the same, for each
// algorithm, or the time of a 401 tells which client IDs exist.
func BenchmarkFailedAssertion(b *testing.B) {
	e := newEnv(b)
	e.clock.Live()
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		s := newSigner(b, alg, "")
		forger := signer{alg: alg, key: newSigner(b, alg, "").key}
		if alg == "RS256" {
			k, _ := rsa.GenerateKey(rand.Reader, 2048)
			forger.key = k
		}
		kp := e.keyless("bench-"+strings.ToLower(alg), s)
		for _, c := range []struct{ name, id string }{{"known-id", kp.ID}, {"unknown-id", credential.NewClientID()}} {
			b.Run(alg+"-"+c.name, func(b *testing.B) {
				body := url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {assertionType},
					"client_assertion": {forger.sign(b, e.claimsFor(c.id), nil)}}.Encode()
				for b.Loop() {
					req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					resp, err := benchClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusUnauthorized {
						b.Fatalf("status %d, want 401", resp.StatusCode)
					}
				}
			})
		}
	}
}

// BenchmarkWorstRequest sends, one at a time, the most expensive requests
// a stranger can craft within the limits, and reports the process's CPU
// time per request (the server runs in this process; the client's share is
// a few microseconds) beside the wall time.
func BenchmarkWorstRequest(b *testing.B) {
	e := newEnv(b)
	kp := e.createIntegration(map[string]any{"name": "bench", "scopes": []string{"read"}})
	fill := func(prefix, sep, item string) string {
		var s strings.Builder
		s.WriteString(prefix)
		for i := 0; s.Len() < server.MaxOAuthBodyBytes-len(item)-8; i++ {
			fmt.Fprintf(&s, item, i)
			s.WriteString(sep)
		}
		return s.String()
	}
	many := func(n int, item string) string {
		vs := make([]string, n)
		for i := range vs {
			vs[i] = fmt.Sprintf(item, i)
		}
		return strings.Join(vs, " ")
	}
	cases := []struct {
		name, body string
		basic      keyPair
	}{
		{"16KiB-of-scopes", fill("grant_type=client_credentials&scope=", "+", "s%d"), kp},
		{"100-distinct-scopes", url.Values{"grant_type": {"client_credentials"}, "scope": {many(100, "scope-%d")}}.Encode(), kp},
		{"100-equal-scopes", url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Repeat("read ", 100)}}.Encode(), kp},
		{"20-audiences", url.Values{"grant_type": {"client_credentials"}, "audience": {many(20, "https://api-%d.example.com/")}}.Encode(), kp},
		{"16KiB-of-parameters", fill("grant_type=client_credentials&", "&", "p%d=1"), kp},
		{"16KiB-of-escapes", "grant_type=client_credentials&x=" + strings.Repeat("%41", (server.MaxOAuthBodyBytes-40)/3), kp},
		{"16KiB-wrong-secret", fill("grant_type=client_credentials&", "&", "p%d=1"), keyPair{ID: kp.ID, Secret: credential.NewClientSecret()}},
		{"long-basic-header", "grant_type=client_credentials", keyPair{ID: strings.Repeat("a", 30<<10), Secret: kp.Secret}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				before := processCPU(b)
				req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(c.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(c.basic.ID, c.basic.Secret)
				resp, err := benchClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				cpu += processCPU(b) - before
				if resp.StatusCode >= 500 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/1000, "cpu-ms/op")
		})
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeleteUnderLoad deletes an integration holding 200,000 tokens
// while another integration requests tokens from 16 goroutines, on a real
// SQLite file, and reports what those requests saw: the p99 and the
// longest latency of the requests in flight at any moment of the deletion
// (p99-ms, max-ms), the p99 of the requests before it (base-p99-ms), and
// how long the DELETE itself took (delete-ms). Run it once:
//
//	go test ./server -run '^$' -bench DeleteUnderLoad -benchtime 1x
func BenchmarkDeleteUnderLoad(b *testing.B) {
	const held = 200_000
	type sample struct{ start, end time.Time }
	var during, before []time.Duration
	var deleteTook time.Duration
	for range b.N {
		b.StopTimer()
		e := newEnv(b)
		doomed := e.createIntegration(map[string]any{"name": "doomed"})
		now := e.clock.Now()
		storagetest.SeedTokens(b, e.dbPath, doomed.ID, held, now, now.Add(10*time.Hour))
		other := e.createIntegration(map[string]any{"name": "bystander"})
		u := e.srv.URL + "/oauth2/token"
		body := url.Values{"grant_type": {"client_credentials"}}.Encode()
		b.StartTimer()

		var (
			mu      sync.Mutex
			samples []sample
			stop    = make(chan struct{})
			wg      sync.WaitGroup
		)
		for range 16 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					benchPost(b, u, other, body)
					end := time.Now()
					mu.Lock()
					samples = append(samples, sample{start, end})
					mu.Unlock()
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		delStart := time.Now()
		e.mustAdmin("DELETE", "/admin/integrations/doomed", nil, http.StatusNoContent)
		delEnd := time.Now()
		time.Sleep(500 * time.Millisecond)
		close(stop)
		wg.Wait()

		deleteTook = max(deleteTook, delEnd.Sub(delStart))
		for _, s := range samples {
			switch {
			case s.start.Before(delEnd) && s.end.After(delStart):
				during = append(during, s.end.Sub(s.start))
			case s.end.Before(delStart):
				before = append(before, s.end.Sub(s.start))
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p99 := func(ds []time.Duration) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return ds[(len(ds)*99)/100]
	}
	b.ReportMetric(ms(p99(during)), "p99-ms")
	if len(during) > 0 {
		b.ReportMetric(ms(slices.Max(during)), "max-ms")
	}
	b.ReportMetric(ms(p99(before)), "base-p99-ms")
	b.ReportMetric(ms(deleteTook), "delete-ms")
	b.ReportMetric(float64(len(during)), "requests-during")
}

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeCert writes a certificate for 127.0.0.1 named cn, self-signed, and
// its key, and returns the certificate for clients to trust.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then certificate: a reader that sees the new certificate
	// also finds its key.
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestServeTLS serves HTTPS from tls_cert and tls_key: a client trusting
// the certificate gets its answers with HSTS, plain HTTP to the same port
// gets no API, and a renewed certificate is picked up without a restart.
func TestServeTLS(t *testing.T) {
	old := certCheckInterval
	certCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { certCheckInterval = old })

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, "first")

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"latchkey", "serve", "--listen", "127.0.0.1:0",
			"--database", "sqlite://" + filepath.Join(dir, "latchkey.db"),
			"--issuer", "https://127.0.0.1", "--tls-cert", certFile, "--tls-key", keyFile},
			environ(), strings.NewReader(""), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	addr := regexp.MustCompile(`listening on (\S+) \(public\) for https`)
	var base string
	for deadline := time.Now().Add(15 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
	}
	if base == "" {
		t.Fatalf("no https listener announced; stdout %q, stderr %s", stdout.String(), stderr.String())
	}

	trusting := func(c *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
		}}
	}
	resp, err := trusting(first).Get("https://" + base + "/readyz")
	if err != nil {
		t.Fatalf("GET https /readyz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("https /readyz: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("negotiated %v, want TLS 1.2 or later", resp.TLS)
	}
	// Go's server answers plain HTTP on a TLS port with a bare 400 and
	// closes; the API itself is never reached.
	if resp, err := http.Get("http://" + base + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP to the TLS port got 200")
		}
	}
	// TLS below 1.2 is refused.
	old11 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11,
	}}}
	if resp, err := old11.Get("https://" + base + "/readyz"); err == nil {
		resp.Body.Close()
		t.Errorf("a TLS 1.1 client was served")
	}

	// Renewal: new files on disk are served within the check interval.
	time.Sleep(10 * time.Millisecond) // a later mtime even on coarse clocks
	second := writeCert(t, certFile, keyFile, "second")
	var served string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := trusting(second).Get("https://" + base + "/healthz")
		if err == nil {
			resp.Body.Close()
			served = resp.TLS.PeerCertificates[0].Subject.CommonName
			break
		}
	}
	if served != "second" {
		t.Fatalf("renewed certificate not served within 5s (stderr: %s)", stderr.String())
	}
	// A broken renewal keeps the working certificate.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	resp, err = trusting(second).Get("https://" + base + "/healthz")
	if err != nil {
		t.Fatalf("after a broken renewal: %v", err)
	}
	resp.Body.Close()
	if !strings.Contains(stderr.String(), "cannot be loaded") {
		t.Errorf("a broken renewal was not logged: %s", stderr.String())
	}
}

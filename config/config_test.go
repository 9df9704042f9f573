package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	secretA   = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" // 40 bytes
	secretB   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	secretC   = "cccccccccccccccccccccccccccccccccccccccc"
	bootstrap = "bootstrap-token-0123456789abcdefghijkl"
)

// writeConfig writes content to a real YAML file in a fresh temp directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "latchkey.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("writing config file: %v", err)
	}
	return path
}

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// envFrom turns a map into a getenv function so tests never touch the real
// process environment.
func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// mustLoad runs Load and fails the test on error.
func mustLoad(t *testing.T, args []string, env map[string]string) *Config {
	t.Helper()
	cfg, _, err := Load("serve", args, envFrom(env), io.Discard)
	if err != nil {
		t.Fatalf("Load(%q) error: %v", args, err)
	}
	return cfg
}

// loadErr runs Load and fails the test unless it returns an error.
func loadErr(t *testing.T, args []string, env map[string]string) error {
	t.Helper()
	cfg, _, err := Load("serve", args, envFrom(env), io.Discard)
	if err == nil {
		t.Fatalf("Load(%q) = %+v, want error", args, cfg)
	}
	return err
}

func TestDefault(t *testing.T) {
	got := Default()
	want := Config{
		Listen:           ":8080",
		Issuer:           "http://localhost:8080",
		Database:         "sqlite://latchkey.db",
		TokenLifetime:    10 * time.Hour,
		TokenFormat:      "opaque",
		SigningAlgorithm: "ES256",
		LogLevel:         "info",
		LogFormat:        "text",
		JanitorInterval:  time.Minute,

		DatabaseConnMaxLifetime: 30 * time.Minute,
		DatabaseConnMaxIdleTime: 5 * time.Minute,
		RequestTimeout:          10 * time.Second,
		ShutdownTimeout:         20 * time.Second,

		RateLimitFailures:           60,
		RateLimitFailuresBurst:      20,
		RateLimitAdminFailures:      10,
		RateLimitAdminFailuresBurst: 10,
		IntegrationTokenRate:        600,
		IntegrationTokenBurst:       1000,
		MaxBodiesInFlight:           64,
		IdleTimeout:                 75 * time.Second,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Default().Validate() = %v, want nil", err)
	}

	loaded := mustLoad(t, nil, nil)
	if !reflect.DeepEqual(*loaded, want) {
		t.Errorf("Load with nothing set = %+v, want %+v", *loaded, want)
	}
}

func TestLoadEverySourceSetsEveryKey(t *testing.T) {
	cert, key := writeCert(t)
	want := Config{
		Listen:           "127.0.0.1:9000",
		AdminListen:      "127.0.0.1:9001",
		Issuer:           "https://auth.example.com",
		Database:         "postgres://db.example.com/latchkey",
		Secrets:          []string{secretA, secretB},
		TokenLifetime:    2 * time.Hour,
		TokenFormat:      "jwt",
		SigningAlgorithm: "EdDSA",
		BootstrapToken:   bootstrap,
		LogLevel:         "debug",
		LogFormat:        "json",
		Dev:              true,
		JanitorInterval:  30 * time.Second,

		SigningKeyRotation:      48 * time.Hour,
		DatabaseMaxConns:        25,
		DatabaseMaxIdleConns:    5,
		DatabaseConnMaxLifetime: 10 * time.Minute,
		DatabaseConnMaxIdleTime: 2 * time.Minute,
		RequestTimeout:          20 * time.Second,
		ShutdownTimeout:         45 * time.Second,

		TLSCert:                     cert,
		TLSKey:                      key,
		TrustedProxies:              []string{"10.0.0.0/8", "192.0.2.7"},
		RateLimitFailures:           120,
		RateLimitFailuresBurst:      30,
		RateLimitAdminFailures:      5,
		RateLimitAdminFailuresBurst: 3,
		IntegrationTokenRate:        0,
		IntegrationTokenBurst:       50,
		MetricsIntegrationLabel:     true,
		JWKSFetchAllowPrivate:       true,
		MaxConnections:              5000,
		MaxBodiesInFlight:           16,
		IdleTimeout:                 620 * time.Second,
	}
	file := writeConfig(t, `
listen: "127.0.0.1:9000"
admin_listen: "127.0.0.1:9001"
issuer: https://auth.example.com/
database: postgres://db.example.com/latchkey
secret: [`+secretA+`, `+secretB+`]
token_lifetime: 2h
token_format: jwt
signing_algorithm: EdDSA
bootstrap_token: `+bootstrap+`
log_level: debug
log_format: json
dev: true
janitor_interval: 30s
signing_key_rotation: 48h
database_max_conns: 25
database_max_idle_conns: 5
database_conn_max_lifetime: 10m
database_conn_max_idle_time: 2m
request_timeout: 20s
shutdown_timeout: 45s
tls_cert: `+cert+`
tls_key: `+key+`
trusted_proxies: [10.0.0.0/8, 192.0.2.7]
rate_limit_failures: 120
rate_limit_failures_burst: 30
rate_limit_admin_failures: 5
rate_limit_admin_failures_burst: 3
integration_token_rate: 0
integration_token_burst: 50
metrics_integration_label: true
jwks_fetch_allow_private: true
max_connections: 5000
max_bodies_in_flight: 16
idle_timeout: 620s
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{name: "file via flag", args: []string{"--config", file}},
		{name: "file via env", env: map[string]string{"LATCHKEY_CONFIG": file}},
		{
			name: "env",
			env: map[string]string{
				"LATCHKEY_LISTEN":            "127.0.0.1:9000",
				"LATCHKEY_ADMIN_LISTEN":      "127.0.0.1:9001",
				"LATCHKEY_ISSUER":            "https://auth.example.com/",
				"LATCHKEY_DATABASE":          "postgres://db.example.com/latchkey",
				"LATCHKEY_SECRET":            secretA + "," + secretB,
				"LATCHKEY_TOKEN_LIFETIME":    "7200s",
				"LATCHKEY_TOKEN_FORMAT":      "jwt",
				"LATCHKEY_SIGNING_ALGORITHM": "EdDSA",
				"LATCHKEY_BOOTSTRAP_TOKEN":   bootstrap,
				"LATCHKEY_LOG_LEVEL":         "debug",
				"LATCHKEY_LOG_FORMAT":        "json",
				"LATCHKEY_DEV":               "1",
				"LATCHKEY_JANITOR_INTERVAL":  "30s",

				"LATCHKEY_SIGNING_KEY_ROTATION":        "2880m",
				"LATCHKEY_DATABASE_MAX_CONNS":          "25",
				"LATCHKEY_DATABASE_MAX_IDLE_CONNS":     "5",
				"LATCHKEY_DATABASE_CONN_MAX_LIFETIME":  "600s",
				"LATCHKEY_DATABASE_CONN_MAX_IDLE_TIME": "120s",
				"LATCHKEY_REQUEST_TIMEOUT":             "20000ms",
				"LATCHKEY_SHUTDOWN_TIMEOUT":            "45s",

				"LATCHKEY_TLS_CERT":                        cert,
				"LATCHKEY_TLS_KEY":                         key,
				"LATCHKEY_TRUSTED_PROXIES":                 "10.0.0.0/8,192.0.2.7",
				"LATCHKEY_RATE_LIMIT_FAILURES":             "120",
				"LATCHKEY_RATE_LIMIT_FAILURES_BURST":       "30",
				"LATCHKEY_RATE_LIMIT_ADMIN_FAILURES":       "5",
				"LATCHKEY_RATE_LIMIT_ADMIN_FAILURES_BURST": "3",
				"LATCHKEY_INTEGRATION_TOKEN_RATE":          "0",
				"LATCHKEY_INTEGRATION_TOKEN_BURST":         "50",
				"LATCHKEY_METRICS_INTEGRATION_LABEL":       "true",
				"LATCHKEY_JWKS_FETCH_ALLOW_PRIVATE":        "true",
				"LATCHKEY_MAX_CONNECTIONS":                 "5000",
				"LATCHKEY_MAX_BODIES_IN_FLIGHT":            "16",
				"LATCHKEY_IDLE_TIMEOUT":                    "10m20s",
			},
		},
		{
			name: "flags",
			args: []string{
				"--listen", "127.0.0.1:9000",
				"--admin-listen=127.0.0.1:9001",
				"--issuer", "https://auth.example.com/",
				"--database", "postgres://db.example.com/latchkey",
				"--secret", secretA + ", " + secretB,
				"--token-lifetime", "2h",
				"--token-format", "jwt",
				"--signing-algorithm", "EdDSA",
				"--bootstrap-token", bootstrap,
				"--log-level", "debug",
				"--log-format", "json",
				"--dev",
				"--janitor-interval", "30s",
				"--signing-key-rotation", "48h",
				"--database-max-conns", "25",
				"--database-max-idle-conns=5",
				"--database-conn-max-lifetime", "10m",
				"--database-conn-max-idle-time", "2m",
				"--request-timeout", "20s",
				"--shutdown-timeout", "45s",
				"--tls-cert", cert,
				"--tls-key=" + key,
				"--trusted-proxies", "10.0.0.0/8, 192.0.2.7",
				"--rate-limit-failures", "120",
				"--rate-limit-failures-burst", "30",
				"--rate-limit-admin-failures", "5",
				"--rate-limit-admin-failures-burst", "3",
				"--integration-token-rate", "0",
				"--integration-token-burst=50",
				"--metrics-integration-label",
				"--jwks-fetch-allow-private",
				"--max-connections", "5000",
				"--max-bodies-in-flight=16",
				"--idle-timeout", "620s",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, tt.args, tt.env)
			want := want
			if strings.HasPrefix(tt.name, "file") {
				want.ConfigFile = file
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := writeConfig(t, "token_format: jwt\nlog_level: warn\ndev: false\ntoken_lifetime: 1h\n"+
		"database_max_conns: 8\nrequest_timeout: 30s\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(c *Config) any
		val  any
	}{
		{
			name: "default when nothing set",
			want: func(c *Config) any { return c.LogLevel }, val: "info",
		},
		{
			name: "file beats default",
			args: []string{"--config", file},
			want: func(c *Config) any { return c.LogLevel }, val: "warn",
		},
		{
			name: "env beats file",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_LOG_LEVEL": "error"},
			want: func(c *Config) any { return c.LogLevel }, val: "error",
		},
		{
			name: "empty env does not override file",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_LOG_LEVEL": ""},
			want: func(c *Config) any { return c.LogLevel }, val: "warn",
		},
		{
			name: "flag beats env and file",
			args: []string{"--config", file, "--log-level", "debug"},
			env:  map[string]string{"LATCHKEY_LOG_LEVEL": "error"},
			want: func(c *Config) any { return c.LogLevel }, val: "debug",
		},
		{
			name: "flag set to the default value still beats env",
			args: []string{"--log-level=info"},
			env:  map[string]string{"LATCHKEY_LOG_LEVEL": "error"},
			want: func(c *Config) any { return c.LogLevel }, val: "info",
		},
		{
			name: "unset flag does not override env",
			env:  map[string]string{"LATCHKEY_TOKEN_FORMAT": "jwt"},
			want: func(c *Config) any { return c.TokenFormat }, val: "jwt",
		},
		{
			name: "env bool beats file bool",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_DEV": "true"},
			want: func(c *Config) any { return c.Dev }, val: true,
		},
		{
			name: "flag bool false beats env true",
			args: []string{"--dev=false"},
			env:  map[string]string{"LATCHKEY_DEV": "true"},
			want: func(c *Config) any { return c.Dev }, val: false,
		},
		{
			name: "env duration beats file duration",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_TOKEN_LIFETIME": "90m"},
			want: func(c *Config) any { return c.TokenLifetime }, val: 90 * time.Minute,
		},
		{
			name: "file int beats default",
			args: []string{"--config", file},
			want: func(c *Config) any { return c.DatabaseMaxConns }, val: 8,
		},
		{
			name: "env int beats file int",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_DATABASE_MAX_CONNS": "16"},
			want: func(c *Config) any { return c.DatabaseMaxConns }, val: 16,
		},
		{
			name: "flag int zero beats env int",
			args: []string{"--config", file, "--database-max-conns=0"},
			env:  map[string]string{"LATCHKEY_DATABASE_MAX_CONNS": "16"},
			want: func(c *Config) any { return c.DatabaseMaxConns }, val: 0,
		},
		{
			name: "flag duration beats env and file duration",
			args: []string{"--config", file, "--request-timeout", "5s"},
			env:  map[string]string{"LATCHKEY_REQUEST_TIMEOUT": "1m"},
			want: func(c *Config) any { return c.RequestTimeout }, val: 5 * time.Second,
		},
		{
			name: "flag config path beats env config path",
			args: []string{"--config", file},
			env:  map[string]string{"LATCHKEY_CONFIG": filepath.Join(t.TempDir(), "missing.yaml")},
			want: func(c *Config) any { return c.TokenFormat }, val: "jwt",
		},
		{
			name: "empty flag secret clears file secret",
			args: []string{"--config", writeConfig(t, "secret: "+secretA+"\n"), "--secret="},
			want: func(c *Config) any { return len(c.Secrets) }, val: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.want(mustLoad(t, tt.args, tt.env))
			if got != tt.val {
				t.Errorf("got %v, want %v", got, tt.val)
			}
		})
	}
}

func TestSecrets(t *testing.T) {
	tests := []struct {
		name string
		file string
		args []string
		env  map[string]string
		want []string
	}{
		{name: "yaml single string", file: "secret: " + secretA + "\n", want: []string{secretA}},
		{
			name: "yaml list",
			file: "secret:\n  - " + secretA + "\n  - " + secretB + "\n  - " + secretC + "\n",
			want: []string{secretA, secretB, secretC},
		},
		{
			name: "yaml list entries are not split on commas",
			file: "secret:\n  - \"" + secretA + "," + secretB + "\"\n",
			want: []string{secretA + "," + secretB},
		},
		{name: "yaml absent", file: "log_level: info\n", want: nil},
		{
			name: "env comma-separated",
			env:  map[string]string{"LATCHKEY_SECRET": secretA + "," + secretB},
			want: []string{secretA, secretB},
		},
		{
			name: "env single",
			env:  map[string]string{"LATCHKEY_SECRET": secretC},
			want: []string{secretC},
		},
		{
			name: "flag comma-separated beats env",
			args: []string{"--secret", secretB + "," + secretA},
			env:  map[string]string{"LATCHKEY_SECRET": secretC},
			want: []string{secretB, secretA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			got := mustLoad(t, args, tt.env).Secrets
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Secrets = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     func(t *testing.T) []string
		wantSubs []string
	}{
		{
			name: "unknown key is named",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, "listen: \":9000\"\ntoken_lifetyme: 1h\n")}
			},
			wantSubs: []string{`"token_lifetyme"`, "line 2", "accepted keys"},
		},
		{
			name: "missing explicit file",
			args: func(t *testing.T) []string {
				return []string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}
			},
			wantSubs: []string{"nope.yaml"},
		},
		{
			name: "malformed yaml",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, "listen: [\n")}
			},
			wantSubs: []string{"parsing config file"},
		},
		{
			name: "list for a scalar key",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, "log_level: [debug]\n")}
			},
			wantSubs: []string{"log_level", "line 1"},
		},
		{
			name: "mapping for a duration key",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, "listen: \":9000\"\nrequest_timeout: {seconds: 10}\n")}
			},
			wantSubs: []string{"request_timeout", "line 2", "single value"},
		},
		{
			name: "list for an int key",
			args: func(t *testing.T) []string {
				return []string{"--config", writeConfig(t, "database_max_conns: [25]\n")}
			},
			wantSubs: []string{"database_max_conns", "line 1", "single value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadErr(t, tt.args(t), nil)
			for _, sub := range tt.wantSubs {
				if !strings.Contains(err.Error(), sub) {
					t.Errorf("error %q does not contain %q", err, sub)
				}
			}
		})
	}
}

func TestEmptyConfigFile(t *testing.T) {
	path := writeConfig(t, "")
	got := mustLoad(t, []string{"--config", path}, nil)
	want := Default()
	want.ConfigFile = path
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got %+v, want %+v", *got, want)
	}
}

// problemLine returns the single error line for key, failing unless exactly
// one line names it.
func problemLine(t *testing.T, err error, key string) string {
	t.Helper()
	var found []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(line, key+": ") {
			found = append(found, line)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one line for %q, got %q in:\n%v", key, found, err)
	}
	return found[0]
}

// bad returns the quoted value the test case supplied, which the error line
// must echo back; hidden keys are exempt.
func (tt invalidCase) bad() string {
	if tt.key == "secret" || tt.key == "bootstrap_token" {
		return "(hidden)"
	}
	for _, v := range tt.env {
		return strconv.Quote(v)
	}
	last := tt.args[len(tt.args)-1]
	if i := strings.Index(last, "="); i >= 0 {
		last = last[i+1:]
	}
	return strconv.Quote(last)
}

type invalidCase struct {
	name     string
	env      map[string]string
	args     []string
	key      string
	accepted string
}

func TestInvalidValues(t *testing.T) {
	tests := []invalidCase{
		{name: "listen", env: map[string]string{"LATCHKEY_LISTEN": "8080"}, key: "listen", accepted: "host:port"},
		{name: "admin_listen bad", args: []string{"--admin-listen", "nope"}, key: "admin_listen", accepted: "host:port"},
		{name: "admin_listen same as listen", args: []string{"--admin-listen", ":8080"}, key: "admin_listen", accepted: "different from listen"},
		{name: "issuer", env: map[string]string{"LATCHKEY_ISSUER": "not a url"}, key: "issuer", accepted: "https URL"},
		{name: "database", env: map[string]string{"LATCHKEY_DATABASE": "mysql://x"}, key: "database", accepted: "sqlite://PATH"},
		{name: "secret short", env: map[string]string{"LATCHKEY_SECRET": "short"}, key: "secret", accepted: "at least 32 bytes"},
		{name: "token_lifetime unparsable", env: map[string]string{"LATCHKEY_TOKEN_LIFETIME": "ten hours"}, key: "token_lifetime", accepted: "between 1m and 720h"},
		{name: "token_lifetime flag unparsable", args: []string{"--token-lifetime", "abc"}, key: "token_lifetime", accepted: "between 1m and 720h"},
		{name: "token_lifetime too short", args: []string{"--token-lifetime", "30s"}, key: "token_lifetime", accepted: "between 1m and 720h"},
		{name: "token_lifetime too long", args: []string{"--token-lifetime", "721h"}, key: "token_lifetime", accepted: "between 1m and 720h"},
		{name: "token_lifetime fractional", args: []string{"--token-lifetime", "90.5s"}, key: "token_lifetime", accepted: "whole seconds"},
		{name: "token_format", args: []string{"--token-format", "foo"}, key: "token_format", accepted: "opaque, jwt"},
		{name: "signing_algorithm", args: []string{"--signing-algorithm", "HS256"}, key: "signing_algorithm", accepted: "ES256, EdDSA, RS256"},
		{name: "bootstrap_token", args: []string{"--bootstrap-token", "tooshort"}, key: "bootstrap_token", accepted: "at least 32 characters"},
		{name: "log_level", env: map[string]string{"LATCHKEY_LOG_LEVEL": "trace"}, key: "log_level", accepted: "debug, info, warn, error"},
		{name: "log_format", env: map[string]string{"LATCHKEY_LOG_FORMAT": "xml"}, key: "log_format", accepted: "text, json"},
		{name: "dev env", env: map[string]string{"LATCHKEY_DEV": "yes"}, key: "dev", accepted: "true, false, 1, 0"},
		{name: "dev flag", args: []string{"--dev=maybe"}, key: "dev", accepted: "true, false, 1, 0"},
		{name: "janitor_interval unparsable", env: map[string]string{"LATCHKEY_JANITOR_INTERVAL": "often"}, key: "janitor_interval", accepted: "between 1s and 24h"},
		{name: "janitor_interval too long", env: map[string]string{"LATCHKEY_JANITOR_INTERVAL": "25h"}, key: "janitor_interval", accepted: "between 1s and 24h"},
		{name: "signing_key_rotation too short", args: []string{"--signing-key-rotation", "10m"}, key: "signing_key_rotation", accepted: "0 (off) or a Go duration between 1h and 8760h"},
		{name: "signing_key_rotation unparsable", env: map[string]string{"LATCHKEY_SIGNING_KEY_ROTATION": "monthly"}, key: "signing_key_rotation", accepted: "0 (off)"},
		{name: "database_max_conns unparsable", env: map[string]string{"LATCHKEY_DATABASE_MAX_CONNS": "many"}, key: "database_max_conns", accepted: "0 (sized from the CPU count) or a whole number up to 1000"},
		{name: "database_max_conns fractional", args: []string{"--database-max-conns", "2.5"}, key: "database_max_conns", accepted: "whole number up to 1000"},
		{name: "database_max_conns negative", args: []string{"--database-max-conns=-1"}, key: "database_max_conns", accepted: "whole number up to 1000"},
		{name: "database_max_conns too many", env: map[string]string{"LATCHKEY_DATABASE_MAX_CONNS": "1001"}, key: "database_max_conns", accepted: "whole number up to 1000"},
		{name: "database_max_idle_conns unparsable", args: []string{"--database-max-idle-conns", "few"}, key: "database_max_idle_conns", accepted: "0 (same as database_max_conns) or a whole number up to 1000"},
		{name: "database_max_idle_conns negative", env: map[string]string{"LATCHKEY_DATABASE_MAX_IDLE_CONNS": "-1"}, key: "database_max_idle_conns", accepted: "whole number up to 1000"},
		{name: "database_max_idle_conns too many", args: []string{"--database-max-idle-conns=1001"}, key: "database_max_idle_conns", accepted: "whole number up to 1000"},
		{name: "database_conn_max_lifetime unparsable", env: map[string]string{"LATCHKEY_DATABASE_CONN_MAX_LIFETIME": "forever"}, key: "database_conn_max_lifetime", accepted: "between 1s and 24h"},
		{name: "database_conn_max_lifetime zero", args: []string{"--database-conn-max-lifetime", "0s"}, key: "database_conn_max_lifetime", accepted: "between 1s and 24h"},
		{name: "database_conn_max_lifetime too long", env: map[string]string{"LATCHKEY_DATABASE_CONN_MAX_LIFETIME": "25h"}, key: "database_conn_max_lifetime", accepted: "between 1s and 24h"},
		{name: "database_conn_max_idle_time unparsable", args: []string{"--database-conn-max-idle-time", "idle"}, key: "database_conn_max_idle_time", accepted: "between 1s and 24h"},
		{name: "database_conn_max_idle_time too short", env: map[string]string{"LATCHKEY_DATABASE_CONN_MAX_IDLE_TIME": "500ms"}, key: "database_conn_max_idle_time", accepted: "between 1s and 24h"},
		{name: "database_conn_max_idle_time too long", args: []string{"--database-conn-max-idle-time=24h1s"}, key: "database_conn_max_idle_time", accepted: "between 1s and 24h"},
		{name: "request_timeout unparsable", env: map[string]string{"LATCHKEY_REQUEST_TIMEOUT": "soon"}, key: "request_timeout", accepted: "between 1s and 5m"},
		{name: "request_timeout too short", args: []string{"--request-timeout", "999ms"}, key: "request_timeout", accepted: "between 1s and 5m"},
		{name: "request_timeout too long", env: map[string]string{"LATCHKEY_REQUEST_TIMEOUT": "6m"}, key: "request_timeout", accepted: "between 1s and 5m"},
		{name: "shutdown_timeout too short", args: []string{"--shutdown-timeout", "500ms"}, key: "shutdown_timeout", accepted: "between 1s and 10m"},
		{name: "shutdown_timeout unparsable", env: map[string]string{"LATCHKEY_SHUTDOWN_TIMEOUT": "later"}, key: "shutdown_timeout", accepted: "between 1s and 10m"},
		{name: "tls_cert without key", args: []string{"--tls-cert", "/etc/cert.pem"}, key: "tls_key", accepted: "set together"},
		{name: "tls_key without cert", env: map[string]string{"LATCHKEY_TLS_KEY": "/etc/key.pem"}, key: "tls_cert", accepted: "set together"},
		{name: "tls files missing", args: []string{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"}, key: "tls_cert", accepted: "PEM file"},
		{name: "trusted_proxies", env: map[string]string{"LATCHKEY_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"}, key: "trusted_proxies", accepted: "CIDR ranges"},
		{name: "trusted_proxies bad prefix", args: []string{"--trusted-proxies", "10.0.0.0/33"}, key: "trusted_proxies", accepted: "CIDR ranges"},
		{name: "rate_limit_failures negative", args: []string{"--rate-limit-failures=-1"}, key: "rate_limit_failures", accepted: "0 (off)"},
		{name: "rate_limit_failures unparsable", env: map[string]string{"LATCHKEY_RATE_LIMIT_FAILURES": "lots"}, key: "rate_limit_failures", accepted: "0 (off)"},
		{name: "rate_limit_failures_burst zero", args: []string{"--rate-limit-failures-burst", "0"}, key: "rate_limit_failures_burst", accepted: "from 1 up to"},
		{name: "rate_limit_admin_failures too many", env: map[string]string{"LATCHKEY_RATE_LIMIT_ADMIN_FAILURES": "1000001"}, key: "rate_limit_admin_failures", accepted: "0 (off)"},
		{name: "rate_limit_admin_failures_burst zero", env: map[string]string{"LATCHKEY_RATE_LIMIT_ADMIN_FAILURES_BURST": "0"}, key: "rate_limit_admin_failures_burst", accepted: "from 1 up to"},
		{name: "integration_token_rate negative", args: []string{"--integration-token-rate=-5"}, key: "integration_token_rate", accepted: "0 (no default cap) or a whole number of tokens per minute"},
		{name: "integration_token_rate unparsable", env: map[string]string{"LATCHKEY_INTEGRATION_TOKEN_RATE": "10/s"}, key: "integration_token_rate", accepted: "up to 1000000"},
		{name: "integration_token_rate too many", env: map[string]string{"LATCHKEY_INTEGRATION_TOKEN_RATE": "1000001"}, key: "integration_token_rate", accepted: "up to 1000000"},
		{name: "integration_token_burst zero", env: map[string]string{"LATCHKEY_INTEGRATION_TOKEN_BURST": "0"}, key: "integration_token_burst", accepted: "from 1 up to"},
		{name: "integration_token_burst unparsable", args: []string{"--integration-token-burst", "big"}, key: "integration_token_burst", accepted: "from 1 up to"},
		{name: "jwks_fetch_allow_private", env: map[string]string{"LATCHKEY_JWKS_FETCH_ALLOW_PRIVATE": "yes"}, key: "jwks_fetch_allow_private", accepted: "true, false, 1, 0"},
		{name: "metrics_integration_label", env: map[string]string{"LATCHKEY_METRICS_INTEGRATION_LABEL": "sometimes"}, key: "metrics_integration_label", accepted: "true, false, 1, 0"},
		{name: "max_connections negative", args: []string{"--max-connections=-1"}, key: "max_connections", accepted: "0 (sized from the open-file limit) or a whole number up to 1000000"},
		{name: "max_connections too many", env: map[string]string{"LATCHKEY_MAX_CONNECTIONS": "1000001"}, key: "max_connections", accepted: "0 (sized from the open-file limit)"},
		{name: "max_connections unparsable", env: map[string]string{"LATCHKEY_MAX_CONNECTIONS": "unlimited"}, key: "max_connections", accepted: "0 (sized from the open-file limit)"},
		{name: "max_bodies_in_flight zero", args: []string{"--max-bodies-in-flight", "0"}, key: "max_bodies_in_flight", accepted: "from 1 up to 100000"},
		{name: "max_bodies_in_flight too many", env: map[string]string{"LATCHKEY_MAX_BODIES_IN_FLIGHT": "100001"}, key: "max_bodies_in_flight", accepted: "from 1 up to 100000"},
		{name: "idle_timeout too short", args: []string{"--idle-timeout", "500ms"}, key: "idle_timeout", accepted: "between 1s and 1h"},
		{name: "idle_timeout too long", env: map[string]string{"LATCHKEY_IDLE_TIMEOUT": "61m"}, key: "idle_timeout", accepted: "between 1s and 1h"},
		{name: "idle_timeout unparsable", env: map[string]string{"LATCHKEY_IDLE_TIMEOUT": "a while"}, key: "idle_timeout", accepted: "between 1s and 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadErr(t, tt.args, tt.env)
			line := problemLine(t, err, tt.key)
			if bad := tt.bad(); !strings.Contains(line, bad) {
				t.Errorf("line %q does not quote the bad value %s", line, bad)
			}
			if !strings.Contains(line, "accepted values: ") || !strings.Contains(line, tt.accepted) {
				t.Errorf("line %q does not list accepted values %q", line, tt.accepted)
			}
		})
	}
}

func TestBadValuesInFile(t *testing.T) {
	type entry struct{ key, value, accepted string }
	tests := []struct {
		name    string
		entries []entry
	}{
		{
			name: "unparsable",
			entries: []entry{
				{"token_lifetime", "36000", "between 1m and 720h"},
				{"dev", "maybe", "true, false, 1, 0"},
				{"janitor_interval", "soon", "between 1s and 24h"},
			},
		},
		{
			name: "wrong yaml types",
			entries: []entry{
				{"database_max_conns", "2.5", "whole number up to 1000"},
				{"database_max_idle_conns", "true", "whole number up to 1000"},
				{"database_conn_max_lifetime", "30", "between 1s and 24h"},
				{"database_conn_max_idle_time", "1.5", "between 1s and 24h"},
				{"request_timeout", "false", "between 1s and 5m"},
			},
		},
		{
			name: "out of range",
			entries: []entry{
				{"database_max_conns", "-3", "whole number up to 1000"},
				{"database_max_idle_conns", "1001", "whole number up to 1000"},
				{"database_conn_max_lifetime", "48h", "between 1s and 24h"},
				{"database_conn_max_idle_time", "0s", "between 1s and 24h"},
				{"request_timeout", "1h", "between 1s and 5m"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var content strings.Builder
			for _, e := range tt.entries {
				content.WriteString(e.key + ": " + e.value + "\n")
			}
			err := loadErr(t, []string{"--config", writeConfig(t, content.String())}, nil)
			for _, e := range tt.entries {
				line := problemLine(t, err, e.key)
				if !strings.Contains(line, strconv.Quote(e.value)) {
					t.Errorf("line %q does not quote the bad value %q", line, e.value)
				}
				if !strings.Contains(line, "accepted values: ") || !strings.Contains(line, e.accepted) {
					t.Errorf("line %q does not list accepted values %q", line, e.accepted)
				}
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	err := loadErr(t, []string{
		"--listen", "bad",
		"--issuer", "http://example.com",
		"--database", "mysql://x",
		"--token-lifetime", "1s",
		"--token-format", "foo",
		"--signing-algorithm", "none",
		"--log-level", "loud",
		"--log-format", "xml",
		"--dev=perhaps",
		"--janitor-interval", "0s",
		"--database-max-conns=-1",
		"--database-max-idle-conns", "lots",
		"--database-conn-max-lifetime", "0s",
		"--database-conn-max-idle-time", "25h",
		"--request-timeout", "never",
	}, nil)
	keys := []string{"listen", "issuer", "database", "token_lifetime", "token_format",
		"signing_algorithm", "log_level", "log_format", "dev", "janitor_interval",
		"database_max_conns", "database_max_idle_conns", "database_conn_max_lifetime",
		"database_conn_max_idle_time", "request_timeout"}
	for _, key := range keys {
		problemLine(t, err, key)
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != len(keys) {
		t.Errorf("want %d joined errors, got %v", len(keys), err)
	}

	// Validate on a hand-built Config reports the same way.
	c := Default()
	c.TokenFormat, c.LogFormat = "foo", "xml"
	verr := c.Validate()
	if verr == nil {
		t.Fatal("Validate() = nil, want error")
	}
	if got, want := strings.Count(verr.Error(), "\n")+1, 2; got != want {
		t.Errorf("Validate() lines = %d, want %d:\n%v", got, want, verr)
	}
}

func TestSecretValuesNeverInErrors(t *testing.T) {
	const shortSecret = "s3cr3t-value-xyz"
	const shortBootstrap = "b00tstrap-value-xyz"
	const dbPassword = "hunter2-password"
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		key  string
	}{
		{name: "short secret env", env: map[string]string{"LATCHKEY_SECRET": secretA + "," + shortSecret}, key: "secret"},
		{name: "short secret file", file: "secret: [" + shortSecret + "]\n", key: "secret"},
		{name: "short bootstrap flag", args: []string{"--bootstrap-token", shortBootstrap}, key: "bootstrap_token"},
		{name: "database password", args: []string{"--database", "postgress://u:" + dbPassword + "@h/db"}, key: "database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"--config", writeConfig(t, tt.file)}, args...)
			}
			err := loadErr(t, args, tt.env)
			problemLine(t, err, tt.key)
			for _, v := range []string{shortSecret, shortBootstrap, dbPassword} {
				if strings.Contains(err.Error(), v) {
					t.Errorf("error leaks %q:\n%v", v, err)
				}
			}
		})
	}
}

func TestIssuer(t *testing.T) {
	tests := []struct {
		name   string
		issuer string
		dev    bool
		ok     bool
	}{
		{name: "https", issuer: "https://auth.example.com", ok: true},
		{name: "https with path", issuer: "https://example.com/auth", ok: true},
		{name: "http loopback ipv4 with port", issuer: "http://127.0.0.1:9000", ok: true},
		{name: "http loopback 127/8", issuer: "http://127.1.2.3", ok: true},
		{name: "http localhost", issuer: "http://localhost", ok: true},
		{name: "http ipv6 loopback", issuer: "http://[::1]:8080", ok: true},
		{name: "http non-loopback", issuer: "http://example.com", ok: false},
		{name: "http non-loopback with dev", issuer: "http://example.com", dev: true, ok: true},
		{name: "http lookalike host", issuer: "http://localhost.example.com", ok: false},
		{name: "relative", issuer: "/auth", ok: false},
		{name: "no host", issuer: "https://", ok: false},
		{name: "other scheme", issuer: "ftp://example.com", dev: true, ok: false},
		{name: "query", issuer: "https://example.com?a=b", ok: false},
		{name: "empty query", issuer: "https://example.com?", ok: false},
		{name: "fragment", issuer: "https://example.com#x", ok: false},
		{name: "empty", issuer: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Issuer, c.Dev = tt.issuer, tt.dev
			err := c.Validate()
			if got := err == nil; got != tt.ok {
				t.Errorf("Validate(issuer=%q, dev=%v) = %v, want ok=%v", tt.issuer, tt.dev, err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "issuer: ") {
				t.Errorf("error %q does not name issuer", err)
			}
		})
	}
}

func TestIssuerTrailingSlashTrimmed(t *testing.T) {
	got := mustLoad(t, []string{"--issuer", "https://example.com/auth/"}, nil).Issuer
	if want := "https://example.com/auth"; got != want {
		t.Errorf("Issuer = %q, want %q", got, want)
	}
}

func TestDatabase(t *testing.T) {
	secrets := []string{secretA}
	tests := []struct {
		name       string
		database   string
		secrets    []string
		wantOK     bool
		wantDriver string
		wantDSN    string
		wantDir    string
	}{
		{name: "sqlite bare file", database: "sqlite://latchkey.db", wantOK: true, wantDriver: "sqlite", wantDSN: "latchkey.db", wantDir: "."},
		{name: "sqlite relative dir", database: "sqlite://data/latchkey.db", wantOK: true, wantDriver: "sqlite", wantDSN: "data/latchkey.db", wantDir: "data"},
		{name: "sqlite absolute", database: "sqlite:///var/lib/latchkey/latchkey.db", wantOK: true, wantDriver: "sqlite", wantDSN: "/var/lib/latchkey/latchkey.db", wantDir: "/var/lib/latchkey"},
		{name: "sqlite empty path", database: "sqlite://", wantOK: false, wantDriver: "sqlite", wantDSN: "", wantDir: "."},
		{name: "sqlite with secret", database: "sqlite://latchkey.db", secrets: secrets, wantOK: true, wantDriver: "sqlite", wantDSN: "latchkey.db", wantDir: "."},
		{name: "postgres", database: "postgres://u:p@db:5432/latchkey?sslmode=disable", secrets: secrets, wantOK: true, wantDriver: "postgres", wantDSN: "postgres://u:p@db:5432/latchkey?sslmode=disable"},
		{name: "postgresql", database: "postgresql://db/latchkey", secrets: secrets, wantOK: true, wantDriver: "postgres", wantDSN: "postgresql://db/latchkey"},
		{name: "postgres without secret", database: "postgres://db/latchkey", wantOK: false, wantDriver: "postgres", wantDSN: "postgres://db/latchkey"},
		{name: "postgresql without secret", database: "postgresql://db/latchkey", wantOK: false, wantDriver: "postgres", wantDSN: "postgresql://db/latchkey"},
		{name: "unsupported scheme", database: "mysql://db/latchkey", wantOK: false},
		{name: "no scheme", database: "latchkey.db", wantOK: false},
		{name: "empty", database: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Database, c.Secrets = tt.database, tt.secrets
			err := c.Validate()
			if (err == nil) != tt.wantOK {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.wantOK)
			}
			if err != nil && c.DatabaseDriver() == "postgres" {
				// A valid postgres DSN fails only for the missing secret.
				line := problemLine(t, err, "secret")
				if line != err.Error() {
					t.Errorf("Validate() = %q, want only the secret line", err)
				}
				for _, sub := range []string{"is required with a postgres database", "every replica must share it", "accepted values: "} {
					if !strings.Contains(line, sub) {
						t.Errorf("line %q does not contain %q", line, sub)
					}
				}
			}
			if got := c.DatabaseDriver(); got != tt.wantDriver {
				t.Errorf("DatabaseDriver() = %q, want %q", got, tt.wantDriver)
			}
			if got := c.DatabaseDSN(); got != tt.wantDSN {
				t.Errorf("DatabaseDSN() = %q, want %q", got, tt.wantDSN)
			}
			if got := c.DataDir(); got != tt.wantDir {
				t.Errorf("DataDir() = %q, want %q", got, tt.wantDir)
			}
		})
	}
}

// TestPostgresSecretViaLoad checks the secret requirement after sources
// are merged, so a secret from any source satisfies it and clearing one
// does not slip through.
func TestPostgresSecretViaLoad(t *testing.T) {
	const pg = "postgres://db.example.com/latchkey"
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		wantOK bool
	}{
		{name: "sqlite without secret", env: map[string]string{"LATCHKEY_DATABASE": "sqlite://data/latchkey.db"}, wantOK: true},
		{name: "postgres without secret", env: map[string]string{"LATCHKEY_DATABASE": pg}},
		{name: "postgresql without secret", args: []string{"--database", "postgresql://db.example.com/latchkey"}},
		{name: "postgres with empty env secret", env: map[string]string{"LATCHKEY_DATABASE": pg, "LATCHKEY_SECRET": ""}},
		{name: "postgres with env secret", env: map[string]string{"LATCHKEY_DATABASE": pg, "LATCHKEY_SECRET": secretA}, wantOK: true},
		{name: "postgres with file secret", args: []string{"--config", writeConfig(t, "database: "+pg+"\nsecret: "+secretA+"\n")}, wantOK: true},
		{name: "postgres with file secret cleared by flag", args: []string{"--config", writeConfig(t, "database: "+pg+"\nsecret: "+secretA+"\n"), "--secret="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantOK {
				mustLoad(t, tt.args, tt.env)
				return
			}
			line := problemLine(t, loadErr(t, tt.args, tt.env), "secret")
			if !strings.Contains(line, "is required with a postgres database") || !strings.Contains(line, "accepted values: ") {
				t.Errorf("line %q does not say secret is required with postgres", line)
			}
		})
	}
}

// TestValidatePoolAndTimeout covers the range checks Validate applies to a
// hand-built Config, which never passes through the string conversion.
func TestValidatePoolAndTimeout(t *testing.T) {
	tests := []struct {
		name     string
		set      func(c *Config)
		key      string // empty when the value is valid
		bad      string
		accepted string
	}{
		{name: "max conns zero", set: func(c *Config) { c.DatabaseMaxConns = 0 }},
		{name: "max conns 1000", set: func(c *Config) { c.DatabaseMaxConns = 1000 }},
		{name: "max conns negative", set: func(c *Config) { c.DatabaseMaxConns = -1 }, key: "database_max_conns", bad: "-1", accepted: "0 (sized from the CPU count) or a whole number up to 1000"},
		{name: "max conns 1001", set: func(c *Config) { c.DatabaseMaxConns = 1001 }, key: "database_max_conns", bad: "1001", accepted: "whole number up to 1000"},
		{name: "max idle conns 1000", set: func(c *Config) { c.DatabaseMaxIdleConns = 1000 }},
		{name: "max idle conns negative", set: func(c *Config) { c.DatabaseMaxIdleConns = -1 }, key: "database_max_idle_conns", bad: "-1", accepted: "0 (same as database_max_conns) or a whole number up to 1000"},
		{name: "max idle conns 1001", set: func(c *Config) { c.DatabaseMaxIdleConns = 1001 }, key: "database_max_idle_conns", bad: "1001", accepted: "whole number up to 1000"},
		{name: "conn lifetime bounds", set: func(c *Config) { c.DatabaseConnMaxLifetime, c.DatabaseConnMaxIdleTime = time.Second, 24*time.Hour }},
		{name: "conn lifetime zero", set: func(c *Config) { c.DatabaseConnMaxLifetime = 0 }, key: "database_conn_max_lifetime", bad: `"0s"`, accepted: "between 1s and 24h"},
		{name: "conn idle time too long", set: func(c *Config) { c.DatabaseConnMaxIdleTime = 25 * time.Hour }, key: "database_conn_max_idle_time", bad: `"25h0m0s"`, accepted: "between 1s and 24h"},
		{name: "request timeout bounds", set: func(c *Config) { c.RequestTimeout = 5 * time.Minute }},
		{name: "request timeout too short", set: func(c *Config) { c.RequestTimeout = 999 * time.Millisecond }, key: "request_timeout", bad: `"999ms"`, accepted: "between 1s and 5m"},
		{name: "request timeout too long", set: func(c *Config) { c.RequestTimeout = 5*time.Minute + time.Second }, key: "request_timeout", bad: `"5m1s"`, accepted: "between 1s and 5m"},
		{name: "connection cap bounds", set: func(c *Config) { c.MaxConnections, c.MaxBodiesInFlight = 1_000_000, 100_000 }},
		{name: "connection cap from the limit", set: func(c *Config) { c.MaxConnections, c.MaxBodiesInFlight = 0, 1 }},
		{name: "connection cap negative", set: func(c *Config) { c.MaxConnections = -1 }, key: "max_connections", bad: `"-1"`, accepted: "0 (sized from the open-file limit)"},
		{name: "connection cap too many", set: func(c *Config) { c.MaxConnections = 1_000_001 }, key: "max_connections", bad: `"1000001"`, accepted: "up to 1000000"},
		{name: "no body slots", set: func(c *Config) { c.MaxBodiesInFlight = 0 }, key: "max_bodies_in_flight", bad: `"0"`, accepted: "from 1 up to 100000"},
		{name: "idle timeout bounds", set: func(c *Config) { c.IdleTimeout = time.Hour }},
		{name: "idle timeout zero", set: func(c *Config) { c.IdleTimeout = 0 }, key: "idle_timeout", bad: `"0s"`, accepted: "between 1s and 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.set(&c)
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want error")
			}
			line := problemLine(t, err, tt.key)
			if want := tt.key + ": " + tt.bad + " is not valid"; !strings.HasPrefix(line, want) {
				t.Errorf("line %q does not start with %q", line, want)
			}
			if !strings.Contains(line, "accepted values: ") || !strings.Contains(line, tt.accepted) {
				t.Errorf("line %q does not list accepted values %q", line, tt.accepted)
			}
		})
	}
}

func TestFlagParsing(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantArgs []string
		wantErr  error
	}{
		{name: "positional args returned", args: []string{"--listen", ":9000", "alice", "bob"}, wantArgs: []string{"alice", "bob"}},
		{name: "no args", args: nil, wantArgs: nil},
		{name: "short help", args: []string{"-h"}, wantErr: flag.ErrHelp},
		{name: "long help", args: []string{"--help"}, wantErr: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			_, gotArgs, err := Load("serve", tt.args, nil, &out)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if !strings.Contains(out.String(), "-token-lifetime") {
					t.Errorf("usage output lacks -token-lifetime:\n%s", out.String())
				}
				return
			}
			if !slices.Equal(gotArgs, tt.wantArgs) {
				t.Errorf("args = %q, want %q", gotArgs, tt.wantArgs)
			}
		})
	}

	if _, _, err := Load("serve", []string{"--no-such-flag"}, nil, io.Discard); err == nil || errors.Is(err, flag.ErrHelp) {
		t.Errorf("unknown flag: err = %v, want a parse error", err)
	}
}

func TestSlogLevel(t *testing.T) {
	tests := []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"error", slog.LevelError},
		{"bogus", slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			c := Config{LogLevel: tt.level}
			if got := c.SlogLevel(); got != tt.want {
				t.Errorf("SlogLevel() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestTrustedProxiesEveryAddress checks that trusted_proxies never trusts
// every address, however it is spelled: with every peer trusted, anyone's
// X-Forwarded-For would pick the address that the failure limits count and
// the audit log records.
func TestTrustedProxiesEveryAddress(t *testing.T) {
	tests := []struct {
		name    string
		proxies string
		refused string   // what the line says is trusted; "" when accepted
		entry   string   // the entry the line names, when one alone is at fault
		want    []string // ProxyNets when accepted
	}{
		{name: "all IPv4", proxies: "0.0.0.0/0", refused: "every IPv4 address", entry: `entry 1 "0.0.0.0/0"`},
		{name: "all IPv6", proxies: "::/0", refused: "every IPv4 and IPv6 address", entry: `entry 1 "::/0"`},
		{name: "all IPv4 with host bits", proxies: "10.1.2.3/0", refused: "every IPv4 address", entry: `entry 1 "10.1.2.3/0"`},
		{name: "all IPv6 with host bits", proxies: "::1/0", refused: "every IPv4 and IPv6 address", entry: `entry 1 "::1/0"`},
		{name: "all IPv6 long form", proxies: "0000:0000:0000:0000:0000:0000:0000:0000/0", refused: "every IPv4 and IPv6 address"},
		{name: "after a good entry", proxies: "10.0.0.0/8, 0.0.0.0/0", refused: "every IPv4 address", entry: `entry 2 "0.0.0.0/0"`},
		{name: "IPv4-mapped", proxies: "::ffff:0:0/96", refused: "every IPv4 address", entry: `entry 1 "::ffff:0:0/96"`},
		{name: "IPv4-mapped dotted", proxies: "::ffff:0.0.0.0/96", refused: "every IPv4 address", entry: `entry 1 "::ffff:0.0.0.0/96"`},
		{name: "IPv6 range holding the mapped range", proxies: "::ffff:0:0/95", refused: "every IPv4 address", entry: `entry 1 "::ffff:0:0/95"`},
		{name: "IPv6 low half", proxies: "::/1", refused: "every IPv4 address", entry: `entry 1 "::/1"`},
		{name: "IPv4 halves", proxies: "0.0.0.0/1,128.0.0.0/1", refused: "the entries together trust every IPv4 address"},
		{name: "IPv4 uneven pieces", proxies: "128.0.0.0/1, 10.0.0.0/8, 0.0.0.0/2, 64.0.0.0/2", refused: "the entries together trust every IPv4 address"},
		{name: "IPv4 pieces mapped and not", proxies: "::ffff:0:0/97,128.0.0.0/1", refused: "the entries together trust every IPv4 address"},
		{name: "IPv6 halves", proxies: "8000::/1,::/1", refused: "every IPv4 address", entry: `entry 2 "::/1"`},
		// No IPv6 client is ever in ::ffff:0:0/96 (it is compared as IPv4),
		// so everything but that range is every IPv6 address.
		{name: "IPv6 but the mapped range", proxies: allIPv6But("::ffff:0:0/96"), refused: "the entries together trust every IPv6 address"},
		{name: "IPv6 and mapped pieces", proxies: allIPv6But("::ffff:0:0/96") + ",::ffff:0:0/97,::ffff:128.0.0.0/97", refused: "the entries together trust every IPv4 and IPv6 address"},
		{name: "IPv6 but one IPv4-mapped address", proxies: allIPv6But("::ffff:10.0.0.1/128"), refused: "the entries together trust every IPv6 address"},

		{name: "proxies", proxies: "10.0.0.0/8,127.0.0.1", want: []string{"10.0.0.0/8", "127.0.0.1/32"}},
		{name: "IPv4 half", proxies: "0.0.0.0/1", want: []string{"0.0.0.0/1"}},
		{name: "IPv6 unique local", proxies: "fd00::/8,::1", want: []string{"fd00::/8", "::1/128"}},
		{name: "IPv6 global unicast", proxies: "2000::/3", want: []string{"2000::/3"}},
		{name: "IPv4-mapped range is its IPv4 range", proxies: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		{name: "IPv4-mapped address", proxies: "::ffff:192.0.2.7", want: []string{"192.0.2.7/32"}},
		{name: "unspecified address alone", proxies: "0.0.0.0,::", want: []string{"0.0.0.0/32", "::/128"}},
		{name: "almost everything", proxies: "0.0.0.0/1,128.0.0.0/2,192.0.0.0/3,224.0.0.0/4,240.0.0.0/5,248.0.0.0/6,252.0.0.0/7,254.0.0.0/8,255.0.0.0/9",
			want: []string{"0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3", "224.0.0.0/4", "240.0.0.0/5", "248.0.0.0/6", "252.0.0.0/7", "254.0.0.0/8", "255.0.0.0/9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"LATCHKEY_TRUSTED_PROXIES": tt.proxies}
			if tt.refused == "" {
				nets, err := mustLoad(t, nil, env).ProxyNets()
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, n := range nets {
					got = append(got, n.String())
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("ProxyNets() = %q; want %q", got, tt.want)
				}
				return
			}
			line := problemLine(t, loadErr(t, nil, env), "trusted_proxies")
			for _, want := range []string{tt.refused, tt.entry, "X-Forwarded-For", "failure limits", "audit log", "accepted values: "} {
				if !strings.Contains(line, want) {
					t.Errorf("line %q does not say %q", line, want)
				}
			}
		})
	}
}

// allIPv6But returns the ranges that together hold every IPv6 address but
// those of hole: the sibling of each range on the way down to it.
func allIPv6But(hole string) string {
	h := netip.MustParsePrefix(hole)
	var out []string
	for bits := 1; bits <= h.Bits(); bits++ {
		b := h.Addr().AsSlice()
		b[(bits-1)/8] ^= 0x80 >> ((bits - 1) % 8)
		a, _ := netip.AddrFromSlice(b)
		out = append(out, netip.PrefixFrom(a, bits).Masked().String())
	}
	return strings.Join(out, ",")
}

// TestIssuerFollowsListen: an issuer left unset names the port the server
// listens on, where this machine's loopback reaches it; a set issuer is
// kept, with a warning when it names this machine on another port.
func TestIssuerFollowsListen(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		wantIssuer  string
		wantWarning bool
	}{
		{"defaults", nil, "http://localhost:8080", false},
		{"loopback listen", map[string]string{"LATCHKEY_LISTEN": "127.0.0.1:18473"}, "http://localhost:18473", false},
		{"any-address listen", map[string]string{"LATCHKEY_LISTEN": ":9000"}, "http://localhost:9000", false},
		{"IPv6 loopback listen", map[string]string{"LATCHKEY_LISTEN": "[::1]:9001"}, "http://localhost:9001", false},
		{"port chosen at start-up", map[string]string{"LATCHKEY_LISTEN": "127.0.0.1:0"}, "http://localhost:8080", false},
		{"one non-loopback address", map[string]string{"LATCHKEY_LISTEN": "192.0.2.10:9000"}, "http://localhost:8080", false},
		{"set issuer agrees", map[string]string{"LATCHKEY_LISTEN": "127.0.0.1:9000", "LATCHKEY_ISSUER": "http://127.0.0.1:9000"}, "http://127.0.0.1:9000", false},
		{"set issuer on another port", map[string]string{"LATCHKEY_LISTEN": "127.0.0.1:18473", "LATCHKEY_ISSUER": "http://localhost:8080"}, "http://localhost:8080", true},
		{"set issuer elsewhere", map[string]string{"LATCHKEY_LISTEN": ":9000", "LATCHKEY_ISSUER": "https://auth.example.com"}, "https://auth.example.com", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := Load("serve", nil, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Issuer != tc.wantIssuer {
				t.Errorf("issuer = %q, want %q", c.Issuer, tc.wantIssuer)
			}
			if w := c.IssuerWarning(); (w != "") != tc.wantWarning {
				t.Errorf("warning = %q, want one: %v", w, tc.wantWarning)
			}
		})
	}
}

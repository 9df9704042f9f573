// Package config loads latchkey's settings from defaults, a YAML file, the
// environment and command-line flags, so that every subcommand agrees on one
// precedence order and one set of validation rules.
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Limits are constants rather than settings because they protect the server
// from configurations that are certainly mistakes (tokens living for a year,
// a janitor spinning every millisecond).
const (
	minTokenLifetime   = time.Minute
	maxTokenLifetime   = 720 * time.Hour
	minJanitorInterval = time.Second
	maxJanitorInterval = 24 * time.Hour
	// Rotating signing keys more often than hourly only grows the JWKS;
	// a year is the longest any key should sign.
	minKeyRotation = time.Hour
	maxKeyRotation = 8760 * time.Hour
	// A pool beyond this is a typo: PostgreSQL's own default allows 100
	// connections for every client together.
	maxConns          = 1000
	minConnTime       = time.Second
	maxConnTime       = 24 * time.Hour
	minRequestTimeout = time.Second
	maxRequestTimeout = 5 * time.Minute
	// A shutdown longer than this outlasts every orchestrator's patience
	// (Kubernetes gives 30s by default).
	minShutdownTimeout = time.Second
	maxShutdownTimeout = 10 * time.Minute
	// Rate limits are per minute; beyond this they no longer limit.
	maxRateLimit = 1_000_000
	// No process holds more sockets than this; a larger cap is a typo.
	maxConnections = 1_000_000
	// Each body slot may hold a 1 MiB admin body; this many would be
	// 100 GiB, which no longer bounds anything.
	maxBodiesInFlight = 100_000
	// An idle timeout under a second closes connections between a
	// client's requests; over an hour it keeps dead peers' sockets. Load
	// balancers want it longer than their own (AWS ALB 60 s, Google Cloud
	// 600 s), which both bounds allow.
	minIdleTimeout = time.Second
	maxIdleTimeout = time.Hour

	// minSecretBytes matches the key size of the HMAC and AEAD primitives the
	// secret feeds, so a shorter secret would silently weaken them.
	minSecretBytes = 32
	// minBootstrapChars keeps the bootstrap token out of brute-force range,
	// since it grants full admin access.
	minBootstrapChars = 32

	sqlitePrefix     = "sqlite://"
	postgresPrefix   = "postgres://"
	postgresqlPrefix = "postgresql://"

	configEnv  = "LATCHKEY_CONFIG"
	configFlag = "config"
)

// Config holds the resolved settings. It is a plain value so that callers and
// tests can build one directly and still run the same Validate as Load does.
type Config struct {
	Listen      string
	AdminListen string
	Issuer      string
	Database    string
	// Secrets lists the system secrets, current first; the others stay
	// accepted so that rotating the secret does not invalidate live tokens.
	Secrets          []string
	TokenLifetime    time.Duration
	TokenFormat      string
	SigningAlgorithm string
	BootstrapToken   string
	LogLevel         string
	LogFormat        string
	Dev              bool
	JanitorInterval  time.Duration
	// SigningKeyRotation is how old the active signing key may get before
	// it is rotated automatically; 0 turns automatic rotation off.
	SigningKeyRotation time.Duration
	// DatabaseMaxConns caps open database connections (PostgreSQL's pool,
	// or SQLite's readers); 0 sizes it from the CPU count.
	DatabaseMaxConns int
	// DatabaseMaxIdleConns caps idle connections; 0 means DatabaseMaxConns.
	DatabaseMaxIdleConns    int
	DatabaseConnMaxLifetime time.Duration
	DatabaseConnMaxIdleTime time.Duration
	// RequestTimeout bounds how long a request may wait on the database
	// before it is answered 503, so an unreachable database never hangs
	// clients.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds how long requests in flight at a stop signal
	// may run before the process exits anyway.
	ShutdownTimeout time.Duration
	// TLSCert and TLSKey, both or neither, serve HTTPS on every listener.
	TLSCert string
	TLSKey  string
	// TrustedProxies lists the addresses (IPs or CIDRs) whose
	// X-Forwarded-For header is believed; from anyone else it is ignored.
	TrustedProxies []string
	// RateLimitFailures is how many failed client authentications per
	// minute a client ID, and separately a remote address, may make once
	// RateLimitFailuresBurst is used up; 0 turns the limit off.
	RateLimitFailures      int
	RateLimitFailuresBurst int
	// RateLimitAdminFailures is the same for failed admin-token attempts,
	// per remote address.
	RateLimitAdminFailures      int
	RateLimitAdminFailuresBurst int
	// IntegrationTokenRate caps the tokens an integration is issued a
	// minute, once IntegrationTokenBurst is used up, so that a client
	// asking for a token per API call cannot fill the disk; 0 leaves
	// integrations uncapped unless they set token_rate_per_minute.
	IntegrationTokenRate  int
	IntegrationTokenBurst int
	// MetricsIntegrationLabel adds the integration's name as a label to
	// the per-client metrics; off by default because every integration
	// then becomes a set of time series.
	MetricsIntegrationLabel bool
	// MetricsToken, when set, lets a scraper that sends it as a bearer
	// token read /metrics on the public listener from anywhere; without
	// it, only loopback callers and the admin listener may.
	MetricsToken string
	// MaxConnections caps the open connections of the public listener,
	// so that no number of clients exhausts the process's file
	// descriptors; 0 sizes it from the open-file limit.
	MaxConnections int
	// MaxBodiesInFlight caps the requests receiving a body larger than a
	// few KiB at once, so that slow uploads cannot exhaust memory; past
	// it such requests are answered 503 before their body is read.
	MaxBodiesInFlight int
	// IdleTimeout closes a keep-alive connection that has waited this
	// long for its next request.
	IdleTimeout time.Duration
	// ConfigFile records which file was read, so that startup logs can say
	// where the settings came from.
	ConfigFile string
}

// Default returns the settings used when nothing else is configured, chosen
// so that `latchkey serve` works out of the box on a developer machine.
func Default() Config {
	return Config{
		Listen:           ":8080",
		AdminListen:      "",
		Issuer:           "http://localhost:8080",
		Database:         "sqlite://latchkey.db",
		TokenLifetime:    10 * time.Hour,
		TokenFormat:      "opaque",
		SigningAlgorithm: "ES256",
		LogLevel:         "info",
		LogFormat:        "text",
		Dev:              false,
		JanitorInterval:  time.Minute,

		DatabaseConnMaxLifetime: 30 * time.Minute,
		DatabaseConnMaxIdleTime: 5 * time.Minute,
		RequestTimeout:          10 * time.Second,
		ShutdownTimeout:         20 * time.Second,

		RateLimitFailures:           60,
		RateLimitFailuresBurst:      20,
		RateLimitAdminFailures:      10,
		RateLimitAdminFailuresBurst: 10,

		// A well-behaved client asks for one token per process per
		// lifetime (10 h), so 600 a minute is about five orders of
		// magnitude above a fleet's steady state, and a burst of 1000
		// lets a thousand pods start in the same second. A client asking
		// for a token per API call is held to 10 a second: with 10-hour
		// tokens at most 1000 + 600×600 = 361,000 live rows per
		// integration, about 120 MB at 335 bytes a row, where an
		// uncapped one wrote 143,000 rows in 15 seconds (115 GB over a
		// lifetime at that pace).
		IntegrationTokenRate:  600,
		IntegrationTokenBurst: 1000,
		MaxBodiesInFlight:     64,
		IdleTimeout:           75 * time.Second,
	}
}

// Accepted values are listed once so that validation and error messages
// cannot drift apart.
var (
	tokenFormats      = []string{"opaque", "jwt"}
	signingAlgorithms = []string{"ES256", "EdDSA", "RS256"}
	logLevels         = []string{"debug", "info", "warn", "error"}
	logFormats        = []string{"text", "json"}
)

const (
	acceptedAddress      = `host:port or :port, e.g. ":8080"`
	acceptedAdminListen  = `empty (admin API on listen) or a host:port different from listen`
	acceptedIssuer       = `an absolute https URL without query or fragment; http only for localhost, 127.0.0.0/8, ::1, or when dev is true`
	acceptedDatabase     = `sqlite://PATH (e.g. sqlite://latchkey.db or sqlite:///var/lib/latchkey/latchkey.db), postgres://... or postgresql://...`
	acceptedSecret       = `empty, or one or more secrets of at least 32 bytes each (comma-separated in env and flags)`
	acceptedSharedSecret = `one or more secrets of at least 32 bytes each (comma-separated in env and flags)`
	acceptedBootstrap    = `empty, or a token of at least 32 characters`
	acceptedMetricsToken = `empty, or a token of at least 32 characters`
	acceptedLifetime     = `a Go duration in whole seconds between 1m and 720h, e.g. "10h" or "36000s"`
	acceptedJanitor      = `a Go duration between 1s and 24h, e.g. "1m"`
	acceptedRotation     = `0 (off) or a Go duration between 1h and 8760h, e.g. "720h"`
	acceptedBool         = `true, false, 1, 0`
	acceptedConns        = `0 (sized from the CPU count) or a whole number up to 1000`
	acceptedIdleConns    = `0 (same as database_max_conns) or a whole number up to 1000`
	acceptedConnTime     = `a Go duration between 1s and 24h, e.g. "30m"`
	acceptedTimeout      = `a Go duration between 1s and 5m, e.g. "10s"`
	acceptedShutdown     = `a Go duration between 1s and 10m, e.g. "20s"`
	acceptedTLSFile      = `empty, or the path of a PEM file; tls_cert and tls_key are set together`
	acceptedProxies      = `IP addresses or CIDR ranges of your proxies, never all addresses (0.0.0.0/0, ::/0), e.g. "10.0.0.0/8,127.0.0.1" (comma-separated in env and flags)`
	acceptedRate         = `0 (off) or a whole number of failures per minute up to 1000000`
	acceptedBurst        = `a whole number from 1 up to 1000000`
	acceptedTokenRate    = `0 (no default cap) or a whole number of tokens per minute up to 1000000`
	acceptedConnections  = `0 (sized from the open-file limit) or a whole number up to 1000000`
	acceptedBodies       = `a whole number from 1 up to 100000`
	acceptedIdleTimeout  = `a Go duration between 1s and 1h, e.g. "75s"`
)

// value is one raw setting as a source supplied it. Keeping sources as raw
// strings until the final merge lets a malformed flag, env var or file entry
// become an ordinary validation line instead of an early, differently
// worded failure.
type value struct {
	scalar string
	// list is set only when the YAML file gave a sequence (secret), because
	// then entries must not be re-split on commas.
	list   []string
	isList bool
}

// layer maps a setting's key to the value one source supplied for it; a
// missing key means the source did not set it.
type layer map[string]value

// setting describes one key in all its spellings, so adding a setting is a
// single table entry and flag, env and file handling cannot disagree.
type setting struct {
	key    string // YAML key; also the name used in error messages
	env    string
	flag   string
	usage  string
	isBool bool
	// show formats the default for --help.
	show func(c *Config) string
	// set converts a raw value into c, reporting a message without the key
	// prefix when the value cannot be converted at all.
	set func(c *Config, v value) error
}

func settings() []setting {
	str := func(field func(c *Config) *string) func(*Config, value) error {
		return func(c *Config, v value) error {
			*field(c) = v.scalar
			return nil
		}
	}
	// dur checks the range here too, so the message quotes what the user
	// wrote ("90.5s") rather than the normalised form ("1m30.5s").
	dur := func(field func(c *Config) *time.Duration, ok func(time.Duration) bool, accepted string) func(*Config, value) error {
		return func(c *Config, v value) error {
			d, err := time.ParseDuration(v.scalar)
			if err != nil {
				return fmt.Errorf("%q is not a valid duration; accepted values: %s", v.scalar, accepted)
			}
			if !ok(d) {
				return fmt.Errorf("%q is not valid; accepted values: %s", v.scalar, accepted)
			}
			*field(c) = d
			return nil
		}
	}
	// count reads a whole number from 0 to most.
	count := func(field func(c *Config) *int, most int, accepted string) func(*Config, value) error {
		return func(c *Config, v value) error {
			n, err := strconv.Atoi(strings.TrimSpace(v.scalar))
			if err != nil || n < 0 || n > most {
				return fmt.Errorf("%q is not valid; accepted values: %s", v.scalar, accepted)
			}
			*field(c) = n
			return nil
		}
	}
	boolean := func(field func(c *Config) *bool) func(*Config, value) error {
		return func(c *Config, v value) error {
			b, err := strconv.ParseBool(v.scalar)
			if err != nil {
				return fmt.Errorf("%q is not a valid boolean; accepted values: %s", v.scalar, acceptedBool)
			}
			*field(c) = b
			return nil
		}
	}
	return []setting{
		{
			key: "listen", env: "LATCHKEY_LISTEN", flag: "listen",
			usage: "`address` of the OAuth listener",
			show:  func(c *Config) string { return c.Listen },
			set:   str(func(c *Config) *string { return &c.Listen }),
		},
		{
			key: "admin_listen", env: "LATCHKEY_ADMIN_LISTEN", flag: "admin-listen",
			usage: "`address` of a separate admin API listener (empty: admin API on --listen)",
			show:  func(c *Config) string { return c.AdminListen },
			set:   str(func(c *Config) *string { return &c.AdminListen }),
		},
		{
			key: "issuer", env: "LATCHKEY_ISSUER", flag: "issuer",
			usage: "public base `URL` of the server, used as the token issuer",
			show:  func(c *Config) string { return c.Issuer },
			set:   str(func(c *Config) *string { return &c.Issuer }),
		},
		{
			key: "database", env: "LATCHKEY_DATABASE", flag: "database",
			usage: "database `DSN`: sqlite://PATH or postgres://...",
			show:  func(c *Config) string { return c.Database },
			set:   str(func(c *Config) *string { return &c.Database }),
		},
		{
			key: "secret", env: "LATCHKEY_SECRET", flag: "secret",
			usage: "comma-separated system `secrets`, current first, each at least 32 bytes",
			show:  func(*Config) string { return "" },
			set: func(c *Config, v value) error {
				if v.isList {
					c.Secrets = append([]string(nil), v.list...)
					return nil
				}
				c.Secrets = splitList(v.scalar)
				return nil
			},
		},
		{
			key: "token_lifetime", env: "LATCHKEY_TOKEN_LIFETIME", flag: "token-lifetime",
			usage: "access token lifetime as a Go `duration`",
			show:  func(c *Config) string { return c.TokenLifetime.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.TokenLifetime }, tokenLifetimeOK, acceptedLifetime),
		},
		{
			key: "token_format", env: "LATCHKEY_TOKEN_FORMAT", flag: "token-format",
			usage: "access token `format`: " + strings.Join(tokenFormats, " | "),
			show:  func(c *Config) string { return c.TokenFormat },
			set:   str(func(c *Config) *string { return &c.TokenFormat }),
		},
		{
			key: "signing_algorithm", env: "LATCHKEY_SIGNING_ALGORITHM", flag: "signing-algorithm",
			usage: "JWT signing `algorithm`: " + strings.Join(signingAlgorithms, " | "),
			show:  func(c *Config) string { return c.SigningAlgorithm },
			set:   str(func(c *Config) *string { return &c.SigningAlgorithm }),
		},
		{
			key: "bootstrap_token", env: "LATCHKEY_BOOTSTRAP_TOKEN", flag: "bootstrap-token",
			usage: "admin bootstrap `token`, at least 32 characters",
			show:  func(*Config) string { return "" },
			set:   str(func(c *Config) *string { return &c.BootstrapToken }),
		},
		{
			key: "log_level", env: "LATCHKEY_LOG_LEVEL", flag: "log-level",
			usage: "log `level`: " + strings.Join(logLevels, " | "),
			show:  func(c *Config) string { return c.LogLevel },
			set:   str(func(c *Config) *string { return &c.LogLevel }),
		},
		{
			key: "log_format", env: "LATCHKEY_LOG_FORMAT", flag: "log-format",
			usage: "log `format`: " + strings.Join(logFormats, " | "),
			show:  func(c *Config) string { return c.LogFormat },
			set:   str(func(c *Config) *string { return &c.LogFormat }),
		},
		{
			key: "dev", env: "LATCHKEY_DEV", flag: "dev", isBool: true,
			usage: "development mode: allow a plain-http issuer on any host",
			show:  func(c *Config) string { return strconv.FormatBool(c.Dev) },
			set:   boolean(func(c *Config) *bool { return &c.Dev }),
		},
		{
			key: "janitor_interval", env: "LATCHKEY_JANITOR_INTERVAL", flag: "janitor-interval",
			usage: "how often expired tokens are purged, as a Go `duration`",
			show:  func(c *Config) string { return c.JanitorInterval.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.JanitorInterval }, janitorIntervalOK, acceptedJanitor),
		},
		{
			key: "signing_key_rotation", env: "LATCHKEY_SIGNING_KEY_ROTATION", flag: "signing-key-rotation",
			usage: "rotate the JWT signing key when it is this old, as a Go `duration`; 0 is off",
			show:  func(c *Config) string { return c.SigningKeyRotation.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.SigningKeyRotation }, keyRotationOK, acceptedRotation),
		},
		{
			key: "database_max_conns", env: "LATCHKEY_DATABASE_MAX_CONNS", flag: "database-max-conns",
			usage: "most open database connections per process; 0 sizes the pool from the CPU count",
			show:  func(c *Config) string { return strconv.Itoa(c.DatabaseMaxConns) },
			set:   count(func(c *Config) *int { return &c.DatabaseMaxConns }, maxConns, acceptedConns),
		},
		{
			key: "database_max_idle_conns", env: "LATCHKEY_DATABASE_MAX_IDLE_CONNS", flag: "database-max-idle-conns",
			usage: "most idle database connections kept open; 0 is database_max_conns",
			show:  func(c *Config) string { return strconv.Itoa(c.DatabaseMaxIdleConns) },
			set:   count(func(c *Config) *int { return &c.DatabaseMaxIdleConns }, maxConns, acceptedIdleConns),
		},
		{
			key: "database_conn_max_lifetime", env: "LATCHKEY_DATABASE_CONN_MAX_LIFETIME", flag: "database-conn-max-lifetime",
			usage: "close a database connection after this long, as a Go `duration`",
			show:  func(c *Config) string { return c.DatabaseConnMaxLifetime.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.DatabaseConnMaxLifetime }, connTimeOK, acceptedConnTime),
		},
		{
			key: "database_conn_max_idle_time", env: "LATCHKEY_DATABASE_CONN_MAX_IDLE_TIME", flag: "database-conn-max-idle-time",
			usage: "close a database connection idle this long, as a Go `duration`",
			show:  func(c *Config) string { return c.DatabaseConnMaxIdleTime.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.DatabaseConnMaxIdleTime }, connTimeOK, acceptedConnTime),
		},
		{
			key: "request_timeout", env: "LATCHKEY_REQUEST_TIMEOUT", flag: "request-timeout",
			usage: "answer 503 when a request has waited this long on the database, as a Go `duration`",
			show:  func(c *Config) string { return c.RequestTimeout.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.RequestTimeout }, requestTimeoutOK, acceptedTimeout),
		},
		{
			key: "shutdown_timeout", env: "LATCHKEY_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout",
			usage: "on SIGTERM, how long requests in flight may still run, as a Go `duration`",
			show:  func(c *Config) string { return c.ShutdownTimeout.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, shutdownTimeoutOK, acceptedShutdown),
		},
		{
			key: "tls_cert", env: "LATCHKEY_TLS_CERT", flag: "tls-cert",
			usage: "PEM certificate chain `file`; with tls_key, every listener serves HTTPS",
			show:  func(c *Config) string { return c.TLSCert },
			set:   str(func(c *Config) *string { return &c.TLSCert }),
		},
		{
			key: "tls_key", env: "LATCHKEY_TLS_KEY", flag: "tls-key",
			usage: "PEM private key `file` for tls_cert",
			show:  func(c *Config) string { return c.TLSKey },
			set:   str(func(c *Config) *string { return &c.TLSKey }),
		},
		{
			key: "trusted_proxies", env: "LATCHKEY_TRUSTED_PROXIES", flag: "trusted-proxies",
			usage: "comma-separated `addresses` (IPs or CIDRs) whose X-Forwarded-For is believed",
			show:  func(c *Config) string { return strings.Join(c.TrustedProxies, ",") },
			set: func(c *Config, v value) error {
				if v.isList {
					c.TrustedProxies = append([]string(nil), v.list...)
					return nil
				}
				c.TrustedProxies = splitList(v.scalar)
				return nil
			},
		},
		{
			key: "rate_limit_failures", env: "LATCHKEY_RATE_LIMIT_FAILURES", flag: "rate-limit-failures",
			usage: "failed client authentications per minute allowed per address and client ID, per address and per client ID (0: off)",
			show:  func(c *Config) string { return strconv.Itoa(c.RateLimitFailures) },
			set:   count(func(c *Config) *int { return &c.RateLimitFailures }, maxRateLimit, acceptedRate),
		},
		{
			key: "rate_limit_failures_burst", env: "LATCHKEY_RATE_LIMIT_FAILURES_BURST", flag: "rate-limit-failures-burst",
			usage: "failed client authentications allowed at once before rate_limit_failures applies",
			show:  func(c *Config) string { return strconv.Itoa(c.RateLimitFailuresBurst) },
			set:   count(func(c *Config) *int { return &c.RateLimitFailuresBurst }, maxRateLimit, acceptedBurst),
		},
		{
			key: "rate_limit_admin_failures", env: "LATCHKEY_RATE_LIMIT_ADMIN_FAILURES", flag: "rate-limit-admin-failures",
			usage: "failed admin-token attempts per minute allowed per address (0: off)",
			show:  func(c *Config) string { return strconv.Itoa(c.RateLimitAdminFailures) },
			set:   count(func(c *Config) *int { return &c.RateLimitAdminFailures }, maxRateLimit, acceptedRate),
		},
		{
			key: "rate_limit_admin_failures_burst", env: "LATCHKEY_RATE_LIMIT_ADMIN_FAILURES_BURST", flag: "rate-limit-admin-failures-burst",
			usage: "failed admin-token attempts allowed at once before rate_limit_admin_failures applies",
			show:  func(c *Config) string { return strconv.Itoa(c.RateLimitAdminFailuresBurst) },
			set:   count(func(c *Config) *int { return &c.RateLimitAdminFailuresBurst }, maxRateLimit, acceptedBurst),
		},
		{
			key: "integration_token_rate", env: "LATCHKEY_INTEGRATION_TOKEN_RATE", flag: "integration-token-rate",
			usage: "tokens per minute issued to one integration once the burst is spent, unless it sets token_rate_per_minute (0: no default cap)",
			show:  func(c *Config) string { return strconv.Itoa(c.IntegrationTokenRate) },
			set:   count(func(c *Config) *int { return &c.IntegrationTokenRate }, maxRateLimit, acceptedTokenRate),
		},
		{
			key: "integration_token_burst", env: "LATCHKEY_INTEGRATION_TOKEN_BURST", flag: "integration-token-burst",
			usage: "tokens one integration may be issued at once before integration_token_rate applies",
			show:  func(c *Config) string { return strconv.Itoa(c.IntegrationTokenBurst) },
			set:   count(func(c *Config) *int { return &c.IntegrationTokenBurst }, maxRateLimit, acceptedBurst),
		},
		{
			key: "metrics_integration_label", env: "LATCHKEY_METRICS_INTEGRATION_LABEL", flag: "metrics-integration-label", isBool: true,
			usage: "label per-client metrics with the integration name (one set of series per integration)",
			show:  func(c *Config) string { return strconv.FormatBool(c.MetricsIntegrationLabel) },
			set:   boolean(func(c *Config) *bool { return &c.MetricsIntegrationLabel }),
		},
		{
			key: "metrics_token", env: "LATCHKEY_METRICS_TOKEN", flag: "metrics-token",
			usage: "bearer `token` that reads /metrics from anywhere (empty: loopback and admin_listen only)",
			show:  func(*Config) string { return "" },
			set:   str(func(c *Config) *string { return &c.MetricsToken }),
		},
		{
			key: "max_connections", env: "LATCHKEY_MAX_CONNECTIONS", flag: "max-connections",
			usage: "most open connections on the listener; past it the longest-idle keep-alive is closed, else the new connection is answered 503 (0: sized from the open-file limit)",
			show:  func(c *Config) string { return strconv.Itoa(c.MaxConnections) },
			set:   count(func(c *Config) *int { return &c.MaxConnections }, maxConnections, acceptedConnections),
		},
		{
			key: "max_bodies_in_flight", env: "LATCHKEY_MAX_BODIES_IN_FLIGHT", flag: "max-bodies-in-flight",
			usage: "most requests receiving a body over 4 KiB at once; past it they are answered 503",
			show:  func(c *Config) string { return strconv.Itoa(c.MaxBodiesInFlight) },
			set:   count(func(c *Config) *int { return &c.MaxBodiesInFlight }, maxBodiesInFlight, acceptedBodies),
		},
		{
			key: "idle_timeout", env: "LATCHKEY_IDLE_TIMEOUT", flag: "idle-timeout",
			usage: "close a keep-alive connection idle this long, as a Go `duration`; keep it above a load balancer's own",
			show:  func(c *Config) string { return c.IdleTimeout.String() },
			set:   dur(func(c *Config) *time.Duration { return &c.IdleTimeout }, idleTimeoutOK, acceptedIdleTimeout),
		},
	}
}

func idleTimeoutOK(d time.Duration) bool { return d >= minIdleTimeout && d <= maxIdleTimeout }

func shutdownTimeoutOK(d time.Duration) bool {
	return d >= minShutdownTimeout && d <= maxShutdownTimeout
}

func connTimeOK(d time.Duration) bool { return d >= minConnTime && d <= maxConnTime }

func requestTimeoutOK(d time.Duration) bool {
	return d >= minRequestTimeout && d <= maxRequestTimeout
}

// splitList turns a comma-separated env or flag value into entries. A blank
// value means "no secrets" so that `--secret=` can clear a file's secret;
// blank entries inside a list are kept so validation can flag them.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// rawFlag holds a flag's text untouched so conversion happens later with the
// other sources. It reports itself as a boolean flag when asked so that a
// bare `--dev` works while `--dev=maybe` still reaches validation.
type rawFlag struct {
	s      string
	isBool bool
}

func (f *rawFlag) String() string {
	if f == nil {
		return ""
	}
	return f.s
}

func (f *rawFlag) Set(s string) error {
	f.s = s
	return nil
}

func (f *rawFlag) IsBoolFlag() bool { return f.isBool }

// Load resolves the configuration for one subcommand. It exists so that
// serve, migrate and admin share one precedence order (flags > environment >
// config file > defaults) and report every invalid key in a single error.
// getenv may be nil, meaning an empty environment.
func Load(name string, args []string, getenv func(string) string, output io.Writer) (*Config, []string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	table := settings()
	defaults := Default()

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(output)
	configPath := fs.String(configFlag, "", "YAML configuration `file` (env "+configEnv+")")
	for _, s := range table {
		fs.Var(&rawFlag{s: s.show(&defaults), isBool: s.isBool}, s.flag, s.usage+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, flag.ErrHelp
		}
		return nil, nil, fmt.Errorf("parsing %s flags: %w", name, err)
	}

	flags := layer{}
	configSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == configFlag {
			configSet = true
			return
		}
		for _, s := range table {
			if s.flag == f.Name {
				flags[s.key] = value{scalar: f.Value.String()}
			}
		}
	})

	env := layer{}
	for _, s := range table {
		if v := getenv(s.env); v != "" {
			env[s.key] = value{scalar: v}
		}
	}

	path := getenv(configEnv)
	if configSet {
		path = *configPath
	}
	file := layer{}
	if path != "" {
		var err error
		if file, err = readFile(path, table); err != nil {
			return nil, nil, err
		}
	}

	cfg, problems := resolve(table, defaults, file, env, flags)
	cfg.ConfigFile = path
	if err := joinProblems(table, problems, cfg.problems()); err != nil {
		return nil, nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return &cfg, fs.Args(), nil
}

// resolve is the single place where precedence is decided: layers are given
// lowest first, and the last layer that sets a key wins. It returns the
// conversion problems keyed by setting.
func resolve(table []setting, base Config, layers ...layer) (Config, map[string][]string) {
	cfg := base
	problems := map[string][]string{}
	for _, s := range table {
		var (
			v     value
			found bool
		)
		for _, l := range layers {
			if lv, ok := l[s.key]; ok {
				v, found = lv, true
			}
		}
		if !found {
			continue
		}
		if err := s.set(&cfg, v); err != nil {
			problems[s.key] = append(problems[s.key], err.Error())
		}
	}
	cfg.Issuer = strings.TrimRight(cfg.Issuer, "/")
	return cfg, problems
}

// fileConfig mirrors the YAML keys so that the decoder's KnownFields check
// rejects typos. Fields are nodes rather than typed values so that a wrongly
// typed entry becomes a validation line naming its key.
type fileConfig struct {
	Listen           yaml.Node `yaml:"listen"`
	AdminListen      yaml.Node `yaml:"admin_listen"`
	Issuer           yaml.Node `yaml:"issuer"`
	Database         yaml.Node `yaml:"database"`
	Secret           yaml.Node `yaml:"secret"`
	TokenLifetime    yaml.Node `yaml:"token_lifetime"`
	TokenFormat      yaml.Node `yaml:"token_format"`
	SigningAlgorithm yaml.Node `yaml:"signing_algorithm"`
	BootstrapToken   yaml.Node `yaml:"bootstrap_token"`
	LogLevel         yaml.Node `yaml:"log_level"`
	LogFormat        yaml.Node `yaml:"log_format"`
	Dev              yaml.Node `yaml:"dev"`
	JanitorInterval  yaml.Node `yaml:"janitor_interval"`
	KeyRotation      yaml.Node `yaml:"signing_key_rotation"`
	MaxConns         yaml.Node `yaml:"database_max_conns"`
	MaxIdleConns     yaml.Node `yaml:"database_max_idle_conns"`
	ConnMaxLifetime  yaml.Node `yaml:"database_conn_max_lifetime"`
	ConnMaxIdleTime  yaml.Node `yaml:"database_conn_max_idle_time"`
	RequestTimeout   yaml.Node `yaml:"request_timeout"`
	ShutdownTimeout  yaml.Node `yaml:"shutdown_timeout"`
	TLSCert          yaml.Node `yaml:"tls_cert"`
	TLSKey           yaml.Node `yaml:"tls_key"`
	TrustedProxies   yaml.Node `yaml:"trusted_proxies"`
	RateLimit        yaml.Node `yaml:"rate_limit_failures"`
	RateLimitBurst   yaml.Node `yaml:"rate_limit_failures_burst"`
	AdminRateLimit   yaml.Node `yaml:"rate_limit_admin_failures"`
	AdminRateBurst   yaml.Node `yaml:"rate_limit_admin_failures_burst"`
	TokenRate        yaml.Node `yaml:"integration_token_rate"`
	TokenBurst       yaml.Node `yaml:"integration_token_burst"`
	MetricsLabel     yaml.Node `yaml:"metrics_integration_label"`
	MetricsToken     yaml.Node `yaml:"metrics_token"`
	MaxConnections   yaml.Node `yaml:"max_connections"`
	MaxBodies        yaml.Node `yaml:"max_bodies_in_flight"`
	IdleTimeout      yaml.Node `yaml:"idle_timeout"`
}

func (f *fileConfig) nodes() map[string]*yaml.Node {
	return map[string]*yaml.Node{
		"listen":               &f.Listen,
		"admin_listen":         &f.AdminListen,
		"issuer":               &f.Issuer,
		"database":             &f.Database,
		"secret":               &f.Secret,
		"token_lifetime":       &f.TokenLifetime,
		"token_format":         &f.TokenFormat,
		"signing_algorithm":    &f.SigningAlgorithm,
		"bootstrap_token":      &f.BootstrapToken,
		"metrics_token":        &f.MetricsToken,
		"log_level":            &f.LogLevel,
		"log_format":           &f.LogFormat,
		"dev":                  &f.Dev,
		"janitor_interval":     &f.JanitorInterval,
		"signing_key_rotation": &f.KeyRotation,

		"database_max_conns":          &f.MaxConns,
		"database_max_idle_conns":     &f.MaxIdleConns,
		"database_conn_max_lifetime":  &f.ConnMaxLifetime,
		"database_conn_max_idle_time": &f.ConnMaxIdleTime,
		"request_timeout":             &f.RequestTimeout,
		"shutdown_timeout":            &f.ShutdownTimeout,

		"tls_cert":                        &f.TLSCert,
		"tls_key":                         &f.TLSKey,
		"trusted_proxies":                 &f.TrustedProxies,
		"rate_limit_failures":             &f.RateLimit,
		"rate_limit_failures_burst":       &f.RateLimitBurst,
		"rate_limit_admin_failures":       &f.AdminRateLimit,
		"rate_limit_admin_failures_burst": &f.AdminRateBurst,
		"integration_token_rate":          &f.TokenRate,
		"integration_token_burst":         &f.TokenBurst,
		"metrics_integration_label":       &f.MetricsLabel,
		"max_connections":                 &f.MaxConnections,
		"max_bodies_in_flight":            &f.MaxBodies,
		"idle_timeout":                    &f.IdleTimeout,
	}
}

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// readFile reads the YAML file into a layer. Structural problems (missing
// file, bad YAML, unknown or wrongly shaped keys) stop loading, because
// nothing after them could be trusted.
func readFile(path string, table []setting) (layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()

	var fc fileConfig
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			keys := make([]string, len(table))
			for i, s := range table {
				keys[i] = s.key
			}
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownFieldRE.ReplaceAllString(m,
					`unknown key "$1"; accepted keys: `+strings.Join(keys, ", "))
			}
			return nil, fmt.Errorf("parsing config file %s:\n%s", path, strings.Join(msgs, "\n"))
		}
		return nil, fmt.Errorf("parsing config file %s: %w", path, err)
	}

	l := layer{}
	var errs []error
	nodes := fc.nodes()
	for _, s := range table {
		n := nodes[s.key]
		if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") {
			continue
		}
		v, err := nodeValue(n, s.key == "secret" || s.key == "trusted_proxies")
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %s: %w", n.Line, s.key, err))
			continue
		}
		l[s.key] = v
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("parsing config file %s:\n%w", path, err)
	}
	return l, nil
}

// nodeValue extracts a scalar, or for list-capable keys a sequence of
// scalars. Error messages never quote node contents because the key may be
// a secret.
func nodeValue(n *yaml.Node, allowList bool) (value, error) {
	switch {
	case n.Kind == yaml.ScalarNode:
		return value{scalar: n.Value}, nil
	case n.Kind == yaml.SequenceNode && allowList:
		list := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" {
				return value{}, fmt.Errorf("entry %d must be a string", i+1)
			}
			list = append(list, item.Value)
		}
		return value{list: list, isList: true}, nil
	case allowList:
		return value{}, errors.New("must be a string or a list of strings")
	default:
		return value{}, errors.New("must be a single value, not a list or mapping")
	}
}

// joinProblems merges conversion and validation problems into one error
// with a line per problem, in table order so output is stable. A key that
// failed conversion is not also reported by validation, whose complaint
// would be about a value the user never wrote.
func joinProblems(table []setting, conversion, validation map[string][]string) error {
	var errs []error
	for _, s := range table {
		msgs := conversion[s.key]
		if len(msgs) == 0 {
			msgs = validation[s.key]
		}
		for _, m := range msgs {
			errs = append(errs, fmt.Errorf("%s: %s", s.key, m))
		}
	}
	return errors.Join(errs...)
}

// Validate reports every invalid setting at once, one line per problem, so
// that an operator can fix a configuration in one pass. Values of secret and
// bootstrap_token are never included.
func (c *Config) Validate() error {
	return joinProblems(settings(), nil, c.problems())
}

func (c *Config) problems() map[string][]string {
	p := map[string][]string{}
	add := func(key, format string, args ...any) {
		p[key] = append(p[key], fmt.Sprintf(format, args...))
	}

	if msg := checkAddress(c.Listen); msg != "" {
		add("listen", "%q %s; accepted values: %s", c.Listen, msg, acceptedAddress)
	}
	if c.AdminListen != "" {
		if msg := checkAddress(c.AdminListen); msg != "" {
			add("admin_listen", "%q %s; accepted values: %s", c.AdminListen, msg, acceptedAdminListen)
		} else if c.AdminListen == c.Listen {
			add("admin_listen", "%q is the same as listen; accepted values: %s", c.AdminListen, acceptedAdminListen)
		}
	}
	if msg := c.checkIssuer(); msg != "" {
		add("issuer", "%q %s; accepted values: %s", c.Issuer, msg, acceptedIssuer)
	}
	if msg := checkDatabase(c.Database); msg != "" {
		add("database", "%q %s; accepted values: %s", displayDSN(c.Database), msg, acceptedDatabase)
	}
	if len(c.Secrets) == 0 && c.DatabaseDriver() == "postgres" {
		// Replicas must share the secret that keys every stored hash; one
		// generated per replica would make each reject the others' tokens.
		add("secret", "is required with a postgres database, and every replica must share it; accepted values: %s", acceptedSharedSecret)
	}
	for i, s := range c.Secrets {
		if len(s) < minSecretBytes {
			add("secret", "entry %d (hidden) is %d bytes, too short; accepted values: %s", i+1, len(s), acceptedSecret)
		}
	}
	if !tokenLifetimeOK(c.TokenLifetime) {
		add("token_lifetime", "%q is not valid; accepted values: %s", c.TokenLifetime.String(), acceptedLifetime)
	}
	checkEnum(add, "token_format", c.TokenFormat, tokenFormats)
	checkEnum(add, "signing_algorithm", c.SigningAlgorithm, signingAlgorithms)
	if n := utf8.RuneCountInString(c.BootstrapToken); c.BootstrapToken != "" && n < minBootstrapChars {
		add("bootstrap_token", "(hidden) is %d characters, too short; accepted values: %s", n, acceptedBootstrap)
	}
	if n := utf8.RuneCountInString(c.MetricsToken); c.MetricsToken != "" && n < minBootstrapChars {
		add("metrics_token", "(hidden) is %d characters, too short; accepted values: %s", n, acceptedMetricsToken)
	}
	checkEnum(add, "log_level", c.LogLevel, logLevels)
	checkEnum(add, "log_format", c.LogFormat, logFormats)
	if !janitorIntervalOK(c.JanitorInterval) {
		add("janitor_interval", "%q is not valid; accepted values: %s", c.JanitorInterval.String(), acceptedJanitor)
	}
	if !keyRotationOK(c.SigningKeyRotation) {
		add("signing_key_rotation", "%q is not valid; accepted values: %s", c.SigningKeyRotation.String(), acceptedRotation)
	}
	if c.DatabaseMaxConns < 0 || c.DatabaseMaxConns > maxConns {
		add("database_max_conns", "%d is not valid; accepted values: %s", c.DatabaseMaxConns, acceptedConns)
	}
	if c.DatabaseMaxIdleConns < 0 || c.DatabaseMaxIdleConns > maxConns {
		add("database_max_idle_conns", "%d is not valid; accepted values: %s", c.DatabaseMaxIdleConns, acceptedIdleConns)
	}
	if !connTimeOK(c.DatabaseConnMaxLifetime) {
		add("database_conn_max_lifetime", "%q is not valid; accepted values: %s", c.DatabaseConnMaxLifetime.String(), acceptedConnTime)
	}
	if !connTimeOK(c.DatabaseConnMaxIdleTime) {
		add("database_conn_max_idle_time", "%q is not valid; accepted values: %s", c.DatabaseConnMaxIdleTime.String(), acceptedConnTime)
	}
	if !requestTimeoutOK(c.RequestTimeout) {
		add("request_timeout", "%q is not valid; accepted values: %s", c.RequestTimeout.String(), acceptedTimeout)
	}
	if !shutdownTimeoutOK(c.ShutdownTimeout) {
		add("shutdown_timeout", "%q is not valid; accepted values: %s", c.ShutdownTimeout.String(), acceptedShutdown)
	}
	c.checkTLS(add)
	if _, err := c.ProxyNets(); err != nil {
		add("trusted_proxies", "%q: %s; accepted values: %s", strings.Join(c.TrustedProxies, ","), err, acceptedProxies)
	}
	checkRate := func(key string, n int, accepted string) {
		switch {
		case n < 0 || n > maxRateLimit:
			add(key, "%q is not valid; accepted values: %s", strconv.Itoa(n), accepted)
		case accepted == acceptedBurst && n == 0:
			add(key, "%q is not valid; accepted values: %s", "0", acceptedBurst)
		}
	}
	checkRate("rate_limit_failures", c.RateLimitFailures, acceptedRate)
	checkRate("rate_limit_failures_burst", c.RateLimitFailuresBurst, acceptedBurst)
	checkRate("rate_limit_admin_failures", c.RateLimitAdminFailures, acceptedRate)
	checkRate("rate_limit_admin_failures_burst", c.RateLimitAdminFailuresBurst, acceptedBurst)
	checkRate("integration_token_rate", c.IntegrationTokenRate, acceptedTokenRate)
	checkRate("integration_token_burst", c.IntegrationTokenBurst, acceptedBurst)
	if c.MaxConnections < 0 || c.MaxConnections > maxConnections {
		add("max_connections", "%q is not valid; accepted values: %s", strconv.Itoa(c.MaxConnections), acceptedConnections)
	}
	if c.MaxBodiesInFlight < 1 || c.MaxBodiesInFlight > maxBodiesInFlight {
		add("max_bodies_in_flight", "%q is not valid; accepted values: %s", strconv.Itoa(c.MaxBodiesInFlight), acceptedBodies)
	}
	if !idleTimeoutOK(c.IdleTimeout) {
		add("idle_timeout", "%q is not valid; accepted values: %s", c.IdleTimeout.String(), acceptedIdleTimeout)
	}
	return p
}

// checkTLS requires the certificate and key together and loadable, so a
// mistyped path stops start-up instead of serving plain HTTP.
func (c *Config) checkTLS(add func(key, format string, args ...any)) {
	switch {
	case c.TLSCert == "" && c.TLSKey == "":
		return
	case c.TLSCert == "":
		add("tls_cert", "is empty while tls_key is set to %q; accepted values: %s", c.TLSKey, acceptedTLSFile)
		return
	case c.TLSKey == "":
		add("tls_key", "is empty while tls_cert is set to %q; accepted values: %s", c.TLSCert, acceptedTLSFile)
		return
	}
	if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
		add("tls_cert", "%q with tls_key %q cannot be loaded (%s); accepted values: %s", c.TLSCert, c.TLSKey, tlsLoadError(err), acceptedTLSFile)
	}
}

// tlsLoadError keeps the reason and drops what crypto/tls wraps around it,
// which can quote PEM contents.
func tlsLoadError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + " " + pe.Path + ": " + pe.Err.Error()
	}
	msg := err.Error()
	if i := strings.Index(msg, ";"); i > 0 {
		msg = msg[:i]
	}
	return strings.TrimPrefix(msg, "tls: ")
}

// ProxyNets parses trusted_proxies; a bare IP is a one-address range, and
// an IPv4-mapped range (::ffff:10.0.0.0/104) is the IPv4 range it spells,
// since client addresses are compared unmapped. It refuses a list that
// trusts every IPv4 or every IPv6 address, in one entry or together: a
// trusted peer's X-Forwarded-For decides the client's address, so anyone
// could then choose the address the per-address failure limits count and
// the audit log records.
func (c *Config) ProxyNets() ([]netip.Prefix, error) {
	nets := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for i, s := range c.TrustedProxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("entry %d %q is not an IP address or CIDR range", i+1, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if family := trustsEveryAddress([]netip.Prefix{p}); family != "" {
			return nil, fmt.Errorf("entry %d %q trusts every %s address, so anyone could send X-Forwarded-For and choose the address that the failure limits and the audit log see", i+1, s, family)
		}
		nets = append(nets, p)
	}
	if family := trustsEveryAddress(nets); family != "" {
		return nil, fmt.Errorf("the entries together trust every %s address, so anyone could send X-Forwarded-For and choose the address that the failure limits and the audit log see", family)
	}
	return nets, nil
}

var (
	allIPv4   = netip.MustParsePrefix("0.0.0.0/0")
	allIPv6   = netip.MustParsePrefix("::/0")
	allMapped = netip.MustParsePrefix("::ffff:0.0.0.0/96")
)

// trustsEveryAddress names the families ("IPv4", "IPv6" or "IPv4 and
// IPv6") of which nets together contain every address, or returns "". An
// IPv6 range wide enough to hold all of ::ffff:0:0/96 counts as all of
// IPv4, which it spells. That range itself counts as covered for IPv6: a
// client's address is compared unmapped, so no IPv6 client is ever in it.
func trustsEveryAddress(nets []netip.Prefix) string {
	var v4 []netip.Prefix
	v6 := []netip.Prefix{allMapped}
	for _, p := range nets {
		if p.Addr().Is4() {
			v4 = append(v4, p)
			continue
		}
		v6 = append(v6, p)
		if p.Bits() <= allMapped.Bits() && p.Contains(allMapped.Addr()) {
			v4 = append(v4, allIPv4)
		}
	}
	var families []string
	if covers(allIPv4, v4) {
		families = append(families, "IPv4")
	}
	if covers(allIPv6, v6) {
		families = append(families, "IPv6")
	}
	return strings.Join(families, " and ")
}

// covers reports whether nets, all of space's family, together contain
// every address of space. It halves space only where some range lies
// partly inside it, so it visits at most two nodes per range and bit.
func covers(space netip.Prefix, nets []netip.Prefix) bool {
	partial := false
	for _, p := range nets {
		if p.Bits() <= space.Bits() && p.Contains(space.Addr()) {
			return true
		}
		partial = partial || p.Overlaps(space)
	}
	bits := space.Bits()
	if !partial || bits == space.Addr().BitLen() {
		return false
	}
	lo := netip.PrefixFrom(space.Addr(), bits+1)
	b := space.Addr().AsSlice()
	b[bits/8] |= 0x80 >> (bits % 8)
	hiAddr, _ := netip.AddrFromSlice(b)
	return covers(lo, nets) && covers(netip.PrefixFrom(hiAddr, bits+1), nets)
}

func keyRotationOK(d time.Duration) bool {
	return d == 0 || d >= minKeyRotation && d <= maxKeyRotation
}

// tokenLifetimeOK requires whole seconds because token expiry is stored and
// advertised (expires_in, exp) in seconds.
func tokenLifetimeOK(d time.Duration) bool {
	return d%time.Second == 0 && d >= minTokenLifetime && d <= maxTokenLifetime
}

func janitorIntervalOK(d time.Duration) bool {
	return d >= minJanitorInterval && d <= maxJanitorInterval
}

func checkEnum(add func(key, format string, args ...any), key, v string, accepted []string) {
	for _, a := range accepted {
		if v == a {
			return
		}
	}
	add(key, "%q is not valid; accepted values: %s", v, strings.Join(accepted, ", "))
}

// checkAddress returns why addr cannot be listened on, or "".
func checkAddress(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "is not valid (" + ae.Err + ")"
		}
		return "is not valid"
	}
	return ""
}

// checkIssuer enforces https because the issuer is what clients and token
// verifiers trust; plain http is only tolerable where no network sits
// between them.
func (c *Config) checkIssuer() string {
	u, err := url.Parse(c.Issuer)
	if err != nil || !u.IsAbs() || u.Opaque != "" || u.Hostname() == "" {
		return "is not an absolute URL"
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(c.Issuer, "#") {
		return "must not have a query or fragment"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if c.Dev || isLoopback(u.Hostname()) {
			return ""
		}
		return "must use https unless its host is loopback or dev is on"
	default:
		return "must use https"
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkDatabase(dsn string) string {
	switch {
	case strings.HasPrefix(dsn, sqlitePrefix):
		if dsn == sqlitePrefix {
			return "has an empty path"
		}
		return ""
	case strings.HasPrefix(dsn, postgresPrefix), strings.HasPrefix(dsn, postgresqlPrefix):
		if _, err := url.Parse(dsn); err != nil {
			return "is not a valid URL"
		}
		return ""
	default:
		return "has an unsupported scheme"
	}
}

// displayDSN hides credentials, because a mistyped postgres DSN usually
// still carries its password.
func displayDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err == nil && u.User != nil {
		return u.Redacted()
	}
	if err != nil || strings.Contains(strings.ToLower(dsn), "password") {
		return "(hidden)"
	}
	return dsn
}

// DatabaseDriver names the storage backend so callers need not parse the DSN
// themselves; it returns "" for an unsupported DSN.
func (c *Config) DatabaseDriver() string {
	switch {
	case strings.HasPrefix(c.Database, sqlitePrefix):
		return "sqlite"
	case strings.HasPrefix(c.Database, postgresPrefix), strings.HasPrefix(c.Database, postgresqlPrefix):
		return "postgres"
	default:
		return ""
	}
}

// DatabaseDSN returns what the driver expects: the file path for SQLite
// (whose driver does not understand the sqlite:// scheme) or the full URL
// for Postgres. It returns "" for an unsupported DSN.
func (c *Config) DatabaseDSN() string {
	switch c.DatabaseDriver() {
	case "sqlite":
		return strings.TrimPrefix(c.Database, sqlitePrefix)
	case "postgres":
		return c.Database
	default:
		return ""
	}
}

// DataDir tells callers where to create the SQLite file and keep the
// generated secret beside it; it is "" for Postgres, which has no local data.
func (c *Config) DataDir() string {
	if c.DatabaseDriver() != "sqlite" {
		return ""
	}
	return filepath.Dir(c.DatabaseDSN())
}

// SlogLevel converts LogLevel for log/slog; an unvalidated, unknown level
// falls back to info rather than silencing or flooding the logs.
func (c *Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

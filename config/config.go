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
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/latchkey/latchkey/storage"
)

// Limits are constants rather than settings because they protect the server
// from configurations that are certainly mistakes (tokens living for a year,
// a janitor spinning every millisecond).
const (
	// The server's default token lifetime obeys the bounds an
	// integration's own lifetime does.
	minTokenLifetime   = storage.MinTokenLifetimeSeconds * time.Second
	maxTokenLifetime   = storage.MaxTokenLifetimeSeconds * time.Second
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
	// JWKSFetchAllowPrivate lets a private_key_jwt integration's jwks_uri
	// be http and on a loopback, private or link-local address; off, such
	// a URI is never fetched, so an admin cannot point the server at its
	// own network.
	JWKSFetchAllowPrivate bool
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
// so that `latchkey serve` works out of the box on a developer machine. The
// defaults live in the table so that a setting is declared in one place.
func Default() Config {
	var c Config
	for _, s := range settings() {
		s.reset(&c)
	}
	return c
}

// Accepted values shared by several settings are written once so that their
// messages cannot drift apart.
const (
	acceptedBool        = `true, false, 1, 0`
	acceptedTokenChars  = `empty, or a token of at least 32 characters`
	acceptedPoolTime    = `a Go duration between 1s and 24h, e.g. "30m"`
	acceptedTLSFile     = `empty, or the path of a PEM file; tls_cert and tls_key are set together`
	acceptedRate        = `0 (off) or a whole number of failures per minute up to 1000000`
	acceptedBurst       = `a whole number from 1 up to 1000000`
	acceptedSecretsRule = `one or more secrets of at least 32 bytes each (comma-separated in env and flags)`
)

// value is one raw setting as a source supplied it. Keeping sources as raw
// strings until the final merge lets a malformed flag, env var or file entry
// become an ordinary validation line instead of an early, differently
// worded failure.
type value struct {
	scalar string
	// list is set only when the YAML file gave a sequence (a list setting), because
	// then entries must not be re-split on commas.
	list   []string
	isList bool
}

// layer maps a setting's key to the value one source supplied for it; a
// missing key means the source did not set it.
type layer map[string]value

func (l layer) has(key string) bool { _, ok := l[key]; return ok }

// adder records one problem with a setting; the key is added by the caller
// so that a check cannot name the wrong one.
type adder func(format string, args ...any)

// setting is one key in all its roles. Its env var and flag are spelled from
// the key, so the three names cannot disagree, and the YAML file accepts
// exactly the keys of the table.
type setting struct {
	key    string // YAML key; also the name used in error messages
	usage  string
	isBool bool
	// isList accepts a YAML sequence; env and flags split on commas.
	isList bool
	reset  func(c *Config) // stores the default
	show   func(c *Config) string
	// set converts a raw value into c, reporting a message without the key
	// prefix when the value cannot be converted at all.
	set func(c *Config, v value) error
	// check reports what is wrong with the value in c, which Validate runs
	// on hand-built Configs too.
	check func(c *Config, add adder)
}

func (s setting) env() string  { return "LATCHKEY_" + strings.ToUpper(s.key) }
func (s setting) flag() string { return strings.ReplaceAll(s.key, "_", "-") }

// field builds a setting from a pointer to its Config field, so that each
// kind below only says how its type is parsed, shown and checked.
func field[T any](key, usage string, ptr func(*Config) *T, def T, show func(T) string,
	parse func(string) (T, error), check func(c *Config, v T, add adder)) setting {
	return setting{
		key: key, usage: usage,
		reset: func(c *Config) { *ptr(c) = def },
		show:  func(c *Config) string { return show(*ptr(c)) },
		set: func(c *Config, v value) error {
			x, err := parse(v.scalar)
			if err == nil {
				*ptr(c) = x
			}
			return err
		},
		check: func(c *Config, add adder) {
			if check != nil {
				check(c, *ptr(c), add)
			}
		},
	}
}

func same(s string) string { return s }

func text(key, usage string, ptr func(*Config) *string, def string, check func(c *Config, v string, add adder)) setting {
	return field(key, usage, ptr, def, same, func(s string) (string, error) { return s, nil }, check)
}

// oneOf lists its values in --help and in the error, from one list.
func oneOf(key, usage string, ptr func(*Config) *string, def string, values ...string) setting {
	return text(key, usage+": "+strings.Join(values, " | "), ptr, def, func(_ *Config, v string, add adder) {
		if !slices.Contains(values, v) {
			add("%q is not valid; accepted values: %s", v, strings.Join(values, ", "))
		}
	})
}

// token is for secrets given as text: the message counts characters and
// never quotes the value.
func token(key, usage string, ptr func(*Config) *string) setting {
	return text(key, usage, ptr, "", func(_ *Config, v string, add adder) {
		if n := utf8.RuneCountInString(v); v != "" && n < minBootstrapChars {
			add("(hidden) is %d characters, too short; accepted values: %s", n, acceptedTokenChars)
		}
	})
}

func boolean(key, usage string, ptr func(*Config) *bool) setting {
	s := field(key, usage, ptr, false, strconv.FormatBool, func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, fmt.Errorf("%q is not a valid boolean; accepted values: %s", s, acceptedBool)
		}
		return b, nil
	}, nil)
	s.isBool = true
	return s
}

// duration checks the range while converting too, so the message quotes
// what the user wrote ("90.5s") rather than the normalised form ("1m30.5s").
func duration(key, usage string, ptr func(*Config) *time.Duration, def time.Duration, ok func(time.Duration) bool, accepted string) setting {
	return field(key, usage, ptr, def, time.Duration.String, func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a valid duration; accepted values: %s", s, accepted)
		}
		if !ok(d) {
			return 0, fmt.Errorf("%q is not valid; accepted values: %s", s, accepted)
		}
		return d, nil
	}, func(_ *Config, d time.Duration, add adder) {
		if !ok(d) {
			add("%q is not valid; accepted values: %s", d.String(), accepted)
		}
	})
}

func between(lo, hi time.Duration) func(time.Duration) bool {
	return func(d time.Duration) bool { return d >= lo && d <= hi }
}

// count takes a whole number from lo to hi; quoted, as in most messages.
func count(key, usage string, ptr func(*Config) *int, def, lo, hi int, accepted string) setting {
	return whole(key, usage, ptr, def, lo, hi, accepted, "%q")
}

// poolSize is a count from 0 whose Validate message shows the number
// unquoted, as the database pool settings always have.
func poolSize(key, usage string, ptr func(*Config) *int, accepted string) setting {
	return whole(key, usage, ptr, 0, 0, maxConns, accepted, "%s")
}

// whole rejects a negative or too large number while converting, quoting
// what the user wrote; the lower bound is left to the check, whose message
// is the one a hand-built Config gets.
func whole(key, usage string, ptr func(*Config) *int, def, lo, hi int, accepted, verb string) setting {
	return field(key, usage, ptr, def, strconv.Itoa, func(s string) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > hi {
			return 0, fmt.Errorf("%q is not valid; accepted values: %s", s, accepted)
		}
		return n, nil
	}, func(_ *Config, n int, add adder) {
		if n < lo || n > hi {
			add(verb+" is not valid; accepted values: %s", strconv.Itoa(n), accepted)
		}
	})
}

// list keeps a YAML sequence's entries whole and splits env and flag values
// on commas.
func list(key, usage string, ptr func(*Config) *[]string, check func(c *Config, v []string, add adder)) setting {
	s := field(key, usage, ptr, nil, func(v []string) string { return strings.Join(v, ",") }, func(s string) ([]string, error) {
		return splitList(s), nil
	}, check)
	s.isList = true
	scalar := s.set
	s.set = func(c *Config, v value) error {
		if v.isList {
			*ptr(c) = append([]string(nil), v.list...)
			return nil
		}
		return scalar(c, v)
	}
	return s
}

// settings is the one place a setting is declared: a new one needs its
// Config field and an entry here, nothing else. The order is that of --help
// and of error lines.
func settings() []setting {
	return []setting{
		text("listen", "`address` of the OAuth listener",
			func(c *Config) *string { return &c.Listen }, ":8080",
			func(_ *Config, v string, add adder) {
				if msg := checkAddress(v); msg != "" {
					add("%q %s; accepted values: %s", v, msg, `host:port or :port, e.g. ":8080"`)
				}
			}),
		text("admin_listen", "`address` of a separate admin API listener (empty: admin API on --listen)",
			func(c *Config) *string { return &c.AdminListen }, "",
			func(c *Config, v string, add adder) {
				const accepted = `empty (admin API on listen) or a host:port different from listen`
				if v == "" {
					return
				}
				if msg := checkAddress(v); msg != "" {
					add("%q %s; accepted values: %s", v, msg, accepted)
				} else if v == c.Listen {
					add("%q is the same as listen; accepted values: %s", v, accepted)
				}
			}),
		field("issuer", "public base `URL` of the server, used as the token issuer",
			func(c *Config) *string { return &c.Issuer }, "http://localhost:8080", same,
			func(s string) (string, error) { return strings.TrimRight(s, "/"), nil },
			func(c *Config, v string, add adder) {
				if msg := c.checkIssuer(); msg != "" {
					add("%q %s; accepted values: %s", v, msg, `an absolute https URL without query or fragment; http only for localhost, 127.0.0.0/8, ::1, or when dev is true`)
				}
			}),
		text("database", "database `DSN`: sqlite://PATH or postgres://...",
			func(c *Config) *string { return &c.Database }, "sqlite://latchkey.db",
			func(_ *Config, v string, add adder) {
				if msg := checkDatabase(v); msg != "" {
					add("%q %s; accepted values: %s", displayDSN(v), msg, `sqlite://PATH (e.g. sqlite://latchkey.db or sqlite:///var/lib/latchkey/latchkey.db), postgres://... or postgresql://...`)
				}
			}),
		list("secret", "comma-separated system `secrets`, current first, each at least 32 bytes",
			func(c *Config) *[]string { return &c.Secrets },
			func(c *Config, v []string, add adder) {
				if len(v) == 0 && c.DatabaseDriver() == "postgres" {
					// Replicas must share the secret that keys every stored hash; one
					// generated per replica would make each reject the others' tokens.
					add("is required with a postgres database, and every replica must share it; accepted values: %s", acceptedSecretsRule)
				}
				for i, s := range v {
					if len(s) < minSecretBytes {
						add("entry %d (hidden) is %d bytes, too short; accepted values: empty, or %s", i+1, len(s), acceptedSecretsRule)
					}
				}
			}),
		duration("token_lifetime", "access token lifetime as a Go `duration`",
			func(c *Config) *time.Duration { return &c.TokenLifetime }, 10*time.Hour, tokenLifetimeOK,
			`a Go duration in whole seconds between 1m and 720h, e.g. "10h" or "36000s"`),
		oneOf("token_format", "access token `format`",
			func(c *Config) *string { return &c.TokenFormat }, "opaque", "opaque", "jwt"),
		oneOf("signing_algorithm", "JWT signing `algorithm`",
			func(c *Config) *string { return &c.SigningAlgorithm }, storage.ES256, storage.SigningAlgorithms...),
		token("bootstrap_token", "admin bootstrap `token`, at least 32 characters",
			func(c *Config) *string { return &c.BootstrapToken }),
		oneOf("log_level", "log `level`",
			func(c *Config) *string { return &c.LogLevel }, "info", "debug", "info", "warn", "error"),
		oneOf("log_format", "log `format`",
			func(c *Config) *string { return &c.LogFormat }, "text", "text", "json"),
		boolean("dev", "development mode: allow a plain-http issuer on any host",
			func(c *Config) *bool { return &c.Dev }),
		duration("janitor_interval", "how often expired tokens are purged, as a Go `duration`",
			func(c *Config) *time.Duration { return &c.JanitorInterval }, time.Minute,
			between(minJanitorInterval, maxJanitorInterval), `a Go duration between 1s and 24h, e.g. "1m"`),
		duration("signing_key_rotation", "rotate the JWT signing key when it is this old, as a Go `duration`; 0 is off",
			func(c *Config) *time.Duration { return &c.SigningKeyRotation }, 0, keyRotationOK,
			`0 (off) or a Go duration between 1h and 8760h, e.g. "720h"`),
		poolSize("database_max_conns", "most open database connections per process; 0 sizes the pool from the CPU count",
			func(c *Config) *int { return &c.DatabaseMaxConns },
			`0 (sized from the CPU count) or a whole number up to 1000`),
		poolSize("database_max_idle_conns", "most idle database connections kept open; 0 is database_max_conns",
			func(c *Config) *int { return &c.DatabaseMaxIdleConns },
			`0 (same as database_max_conns) or a whole number up to 1000`),
		duration("database_conn_max_lifetime", "close a database connection after this long, as a Go `duration`",
			func(c *Config) *time.Duration { return &c.DatabaseConnMaxLifetime }, 30*time.Minute,
			between(minConnTime, maxConnTime), acceptedPoolTime),
		duration("database_conn_max_idle_time", "close a database connection idle this long, as a Go `duration`",
			func(c *Config) *time.Duration { return &c.DatabaseConnMaxIdleTime }, 5*time.Minute,
			between(minConnTime, maxConnTime), acceptedPoolTime),
		duration("request_timeout", "answer 503 when a request has waited this long on the database, as a Go `duration`",
			func(c *Config) *time.Duration { return &c.RequestTimeout }, 10*time.Second,
			between(minRequestTimeout, maxRequestTimeout), `a Go duration between 1s and 5m, e.g. "10s"`),
		duration("shutdown_timeout", "on SIGTERM, how long requests in flight may still run, as a Go `duration`",
			func(c *Config) *time.Duration { return &c.ShutdownTimeout }, 20*time.Second,
			between(minShutdownTimeout, maxShutdownTimeout), `a Go duration between 1s and 10m, e.g. "20s"`),
		text("tls_cert", "PEM certificate chain `file`; with tls_key, every listener serves HTTPS",
			func(c *Config) *string { return &c.TLSCert }, "", checkTLSCert),
		text("tls_key", "PEM private key `file` for tls_cert",
			func(c *Config) *string { return &c.TLSKey }, "",
			func(c *Config, v string, add adder) {
				if v == "" && c.TLSCert != "" {
					add("is empty while tls_cert is set to %q; accepted values: %s", c.TLSCert, acceptedTLSFile)
				}
			}),
		list("trusted_proxies", "comma-separated `addresses` (IPs or CIDRs) whose X-Forwarded-For is believed",
			func(c *Config) *[]string { return &c.TrustedProxies },
			func(c *Config, v []string, add adder) {
				if _, err := c.ProxyNets(); err != nil {
					add("%q: %s; accepted values: %s", strings.Join(v, ","), err, `IP addresses or CIDR ranges of your proxies, never all addresses (0.0.0.0/0, ::/0), e.g. "10.0.0.0/8,127.0.0.1" (comma-separated in env and flags)`)
				}
			}),
		count("rate_limit_failures", "failed client authentications per minute allowed per address and client ID, per address and per client ID (0: off)",
			func(c *Config) *int { return &c.RateLimitFailures }, 60, 0, maxRateLimit, acceptedRate),
		count("rate_limit_failures_burst", "failed client authentications allowed at once before rate_limit_failures applies",
			func(c *Config) *int { return &c.RateLimitFailuresBurst }, 20, 1, maxRateLimit, acceptedBurst),
		count("rate_limit_admin_failures", "failed admin-token attempts per minute allowed per address (0: off)",
			func(c *Config) *int { return &c.RateLimitAdminFailures }, 10, 0, maxRateLimit, acceptedRate),
		count("rate_limit_admin_failures_burst", "failed admin-token attempts allowed at once before rate_limit_admin_failures applies",
			func(c *Config) *int { return &c.RateLimitAdminFailuresBurst }, 10, 1, maxRateLimit, acceptedBurst),
		// A well-behaved client asks for one token per process per lifetime
		// (10 h), so 600 a minute is about five orders of magnitude above a
		// fleet's steady state, and a burst of 1000 lets a thousand pods
		// start in the same second. A client asking for a token per API call
		// is held to 10 a second: with 10-hour tokens at most 1000 + 600×600
		// = 361,000 live rows per integration, where an uncapped one grows
		// its rows as fast as the server issues them, for a whole lifetime
		// (the README's issuance cap has the measured row size and pace).
		count("integration_token_rate", "tokens per minute issued to one integration once the burst is spent, unless it sets token_rate_per_minute (0: no default cap)",
			func(c *Config) *int { return &c.IntegrationTokenRate }, 600, 0, maxRateLimit,
			`0 (no default cap) or a whole number of tokens per minute up to 1000000`),
		count("integration_token_burst", "tokens one integration may be issued at once before integration_token_rate applies",
			func(c *Config) *int { return &c.IntegrationTokenBurst }, 1000, 1, maxRateLimit, acceptedBurst),
		boolean("metrics_integration_label", "label per-client metrics with the integration name (one set of series per integration)",
			func(c *Config) *bool { return &c.MetricsIntegrationLabel }),
		boolean("jwks_fetch_allow_private", "fetch private_key_jwt jwks_uri key sets over http and from loopback, private and link-local addresses (development only)",
			func(c *Config) *bool { return &c.JWKSFetchAllowPrivate }),
		token("metrics_token", "bearer `token` that reads /metrics from anywhere (empty: loopback and admin_listen only)",
			func(c *Config) *string { return &c.MetricsToken }),
		count("max_connections", "most open connections on the listener; past it the longest-idle keep-alive is closed, else the new connection is answered 503 (0: sized from the open-file limit)",
			func(c *Config) *int { return &c.MaxConnections }, 0, 0, maxConnections,
			`0 (sized from the open-file limit) or a whole number up to 1000000`),
		count("max_bodies_in_flight", "most requests receiving a body over 4 KiB at once; past it they are answered 503",
			func(c *Config) *int { return &c.MaxBodiesInFlight }, 64, 1, maxBodiesInFlight,
			`a whole number from 1 up to 100000`),
		duration("idle_timeout", "close a keep-alive connection idle this long, as a Go `duration`; keep it above a load balancer's own",
			func(c *Config) *time.Duration { return &c.IdleTimeout }, 75*time.Second,
			between(minIdleTimeout, maxIdleTimeout), `a Go duration between 1s and 1h, e.g. "75s"`),
	}
}

// checkTLSCert requires the certificate and key together and loadable, so a
// mistyped path stops start-up instead of serving plain HTTP.
func checkTLSCert(c *Config, cert string, add adder) {
	switch {
	case cert == "" && c.TLSKey != "":
		add("is empty while tls_key is set to %q; accepted values: %s", c.TLSKey, acceptedTLSFile)
	case cert == "" || c.TLSKey == "":
		return
	default:
		if _, err := tls.LoadX509KeyPair(cert, c.TLSKey); err != nil {
			add("%q with tls_key %q cannot be loaded (%s); accepted values: %s", cert, c.TLSKey, tlsLoadError(err), acceptedTLSFile)
		}
	}
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
		fs.Var(&rawFlag{s: s.show(&defaults), isBool: s.isBool}, s.flag(), s.usage+" (env "+s.env()+")")
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
			if s.flag() == f.Name {
				flags[s.key] = value{scalar: f.Value.String()}
			}
		}
	})

	env := layer{}
	for _, s := range table {
		if v := getenv(s.env()); v != "" {
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
	if !file.has("issuer") && !env.has("issuer") && !flags.has("issuer") {
		cfg.Issuer = cfg.defaultIssuer()
	}
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
	return cfg, problems
}

// fileType is a struct with a yaml.Node field per setting, tagged with its
// key, built from the table so that the decoder's KnownFields check rejects
// typos (with yaml.v3's own handling of duplicates and merge keys) without a
// second list of keys to keep in step. Fields are nodes rather than typed
// values so that a wrongly typed entry becomes a validation line naming its
// key.
func fileType(table []setting) reflect.Type {
	fields := make([]reflect.StructField, len(table))
	for i, s := range table {
		fields[i] = reflect.StructField{
			Name: "F" + strconv.Itoa(i),
			Type: reflect.TypeFor[yaml.Node](),
			Tag:  reflect.StructTag(`yaml:"` + s.key + `"`),
		}
	}
	return reflect.StructOf(fields)
}

// fileTypeName stands in for the generated struct's spelling in the
// decoder's messages, which would otherwise list every field.
const fileTypeName = "config.fileConfig"

var unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type ` + regexp.QuoteMeta(fileTypeName))

// readFile reads the YAML file into a layer. Structural problems (missing
// file, bad YAML, unknown or wrongly shaped keys) stop loading, because
// nothing after them could be trusted.
func readFile(path string, table []setting) (layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	defer f.Close()

	typ := fileType(table)
	fc := reflect.New(typ).Elem()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(fc.Addr().Interface()); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			keys := make([]string, len(table))
			for i, s := range table {
				keys[i] = s.key
			}
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				m = strings.ReplaceAll(m, typ.String(), fileTypeName)
				msgs[i] = unknownFieldRE.ReplaceAllString(m,
					`unknown key "$1"; accepted keys: `+strings.Join(keys, ", "))
			}
			return nil, fmt.Errorf("parsing config file %s:\n%s", path, strings.Join(msgs, "\n"))
		}
		return nil, fmt.Errorf("parsing config file %s: %w", path, err)
	}

	l := layer{}
	var errs []error
	for i, s := range table {
		n := fc.Field(i).Addr().Interface().(*yaml.Node)
		if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null") {
			continue
		}
		v, err := nodeValue(n, s.isList)
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
	for _, s := range settings() {
		s.check(c, func(format string, args ...any) {
			p[s.key] = append(p[s.key], fmt.Sprintf(format, args...))
		})
	}
	return p
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

// defaultIssuer is the issuer of a server that was given none: its own
// address as seen from the machine it runs on, so that the metadata of a
// server moved to another port names that port. A listener on one
// specific non-loopback address, or on a port chosen at start-up (0),
// keeps the documented default.
func (c *Config) defaultIssuer() string {
	if port, ok := c.loopbackListenPort(); ok {
		return "http://localhost:" + port
	}
	return Default().Issuer
}

// loopbackListenPort is listen's port when this machine's loopback reaches
// the listener (no host, a loopback or the unspecified address) and the
// port is fixed.
func (c *Config) loopbackListenPort() (string, bool) {
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil || port == "0" || !(host == "" || isLoopback(host) || net.ParseIP(host).IsUnspecified()) {
		return "", false
	}
	return port, true
}

// IssuerWarning says, when the issuer names this machine on another port
// than the one it listens on, that clients following the metadata will
// knock on the wrong door; "" when they agree or it cannot tell.
func (c *Config) IssuerWarning() string {
	u, err := url.Parse(c.Issuer)
	listenPort, ok := c.loopbackListenPort()
	if err != nil || !ok || !isLoopback(u.Hostname()) {
		return ""
	}
	issuerPort := u.Port()
	if issuerPort == "" {
		issuerPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if issuerPort == listenPort {
		return ""
	}
	return fmt.Sprintf("issuer %s names this machine on port %s, but listen is %s: the metadata will send clients to the wrong port (set issuer to http://localhost:%s, or leave it unset)",
		c.Issuer, issuerPort, c.Listen, listenPort)
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

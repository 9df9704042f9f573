package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/latchkey/latchkey/config"
	"github.com/latchkey/latchkey/server"
	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

// secretFile holds the generated system secret when none is configured.
const secretFile = "latchkey.secret"

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.SlogLevel()}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// opened is what serve, migrate and admin create share: the configuration,
// the logger, the system secrets and the open database.
type opened struct {
	cfg     *config.Config
	log     *slog.Logger
	secrets [][]byte
	store   *storage.Store
	rest    []string // positional arguments left after the flags
}

// open loads the configuration, resolves the system secret and opens the
// database.
func open(ctx context.Context, name string, args []string, getenv func(string) string, stderr io.Writer) (*opened, error) {
	cfg, rest, err := config.Load(name, args, getenv, stderr)
	if err != nil {
		return nil, err
	}
	o := &opened{cfg: cfg, log: newLogger(cfg, stderr), rest: rest}
	if o.secrets, err = systemSecrets(cfg, o.log); err != nil {
		return nil, err
	}
	o.store, err = storage.Open(ctx, storage.Options{
		Driver: cfg.DatabaseDriver(), DSN: cfg.DatabaseDSN(), Logger: o.log,
		Credentials: credential.NewMinter(o.secrets), SealingKeys: credential.SealingKeys(o.secrets),
		Pool: storage.Pool{
			MaxConns: cfg.DatabaseMaxConns, MaxIdleConns: cfg.DatabaseMaxIdleConns,
			ConnMaxLifetime: cfg.DatabaseConnMaxLifetime, ConnMaxIdleTime: cfg.DatabaseConnMaxIdleTime,
		},
	})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// systemSecrets returns the configured secrets or, with none configured, a
// secret generated once into the SQLite data directory with mode 0600, so
// `latchkey serve` runs with nothing set up. Configuration validation
// requires a secret with PostgreSQL, whose replicas must share it.
func systemSecrets(cfg *config.Config, log *slog.Logger) ([][]byte, error) {
	if len(cfg.Secrets) > 0 {
		out := make([][]byte, len(cfg.Secrets))
		for i, s := range cfg.Secrets {
			out[i] = []byte(s)
		}
		return out, nil
	}
	path := filepath.Join(cfg.DataDir(), secretFile)
	b, err := readPrivateFile(path)
	switch {
	case err == nil:
		s := strings.TrimSpace(string(b))
		if len(s) < 32 {
			return nil, fmt.Errorf("secret: %s holds fewer than 32 bytes", path)
		}
		log.Warn("using the system secret generated in the data directory; set LATCHKEY_SECRET in production", "file", path)
		return [][]byte{[]byte(s)}, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("secret: %w", err)
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	if err := os.MkdirAll(cfg.DataDir(), 0o700); err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	if err := writeNewFile(path, []byte(hex.EncodeToString(raw[:])+"\n")); errors.Is(err, os.ErrExist) {
		// Another latchkey process on the same data directory won the
		// race; use its secret.
		return systemSecrets(cfg, log)
	} else if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	log.Warn("no secret configured: generated a system secret into the data directory; keep it with the database and set LATCHKEY_SECRET in production", "file", path)
	return [][]byte{[]byte(hex.EncodeToString(raw[:]))}, nil
}

// exposedError is a file that users other than its owner may read or
// write. Its message names the fix.
type exposedError struct {
	path string
	mode fs.FileMode
}

func (e exposedError) Error() string {
	return fmt.Sprintf("%s is %s (mode %04o); run chmod 600 %s", e.path, exposure(e.mode), e.mode.Perm(), e.path)
}

// exposure says who besides the owner may read or write a file of mode m,
// e.g. "readable by group and others, writable by group"; "" for nobody.
func exposure(m fs.FileMode) string {
	who := func(group, others fs.FileMode) string {
		switch g, o := m&group != 0, m&others != 0; {
		case g && o:
			return "group and others"
		case g:
			return "group"
		case o:
			return "others"
		}
		return ""
	}
	r, w := who(0o040, 0o004), who(0o020, 0o002)
	switch {
	case r != "" && r == w:
		return "readable and writable by " + r
	case r != "" && w != "":
		return "readable by " + r + ", writable by " + w
	case r != "":
		return "readable by " + r
	case w != "":
		return "writable by " + w
	}
	return ""
}

// readPrivateFile reads path, refusing with an exposedError a file that
// other users may read or write: a secret others can read is no longer a
// secret, and one others can write lets them choose it. The mode is taken
// from the open file, so it is the mode of what is read.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && exposure(fi.Mode()) != "" {
		return nil, exposedError{path, fi.Mode()}
	}
	return io.ReadAll(f)
}

// writeNewFile creates path with data, mode 0600, all at once: the data
// goes to a temporary file that is then linked to path, so no process ever
// sees a partly written file, and a crash leaves none behind. It fails with
// os.ErrExist when path exists.
func writeNewFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".latchkey-secret-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := open(ctx, "migrate", args, getenv, stderr)
	if err != nil {
		return err
	}
	defer o.store.Close()
	if len(o.rest) > 0 {
		return usageError{"usage: latchkey migrate [flags]"}
	}
	applied, err := o.store.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "database is up to date")
		return nil
	}
	fmt.Fprintf(stdout, "applied migrations %v\n", applied)
	return nil
}

// runServe migrates the database, serves until ctx is done or a listener
// fails, then drains the listeners and stops the janitor and the audit of
// failed admin authentications, which writes what it still holds.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := open(ctx, "serve", args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg, log, st := o.cfg, o.log, o.store
	defer st.Close()
	if len(o.rest) > 0 {
		return usageError{"usage: latchkey serve [flags]"}
	}
	if applied, err := st.Migrate(ctx); err != nil {
		return err
	} else if len(applied) > 0 {
		log.Info("applied migrations", "versions", applied)
	}
	srv, err := newServer(ctx, o)
	if err != nil {
		return err
	}
	if cfg.BootstrapToken == "" {
		tellHowToGetIn(ctx, st, log)
	}
	if w := cfg.IssuerWarning(); w != "" {
		log.Warn(w)
	}
	maxConns, err := connectionCap(cfg.MaxConnections, openFileLimit())
	if err != nil {
		return err
	}
	ls := &listeners{cfg: cfg, log: log, srv: srv}
	defer ls.close()
	if cfg.TLSCert != "" {
		if ls.certs, err = newCertReloader(cfg.TLSCert, cfg.TLSKey, log); err != nil {
			return err
		}
	}
	if err := ls.listen("public", cfg.Listen, srv.Handler(), maxConns); err != nil {
		return err
	}
	if cfg.AdminListen != "" {
		if err := ls.listen("admin", cfg.AdminListen, srv.AdminHandler(), adminMaxConnections); err != nil {
			return err
		}
	}
	errc := ls.serve(stdout)

	janitorCtx, stopJanitor := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { runJanitor(janitorCtx, st, srv, cfg, log) })
	wg.Go(func() { srv.RunAuthFailureAudit(janitorCtx) })

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case serveErr = <-errc:
		log.Error("server failed", "err", serveErr)
	}
	srv.SetReady(false)
	ls.shutdown()
	stopJanitor()
	wg.Wait()
	log.Info("stopped")
	return serveErr
}

// tellHowToGetIn logs the two ways to a first admin when there is none
// but the built-in bootstrap admin, which only works while its token is
// configured: a newcomer's first start-up should say how to go on.
func tellHowToGetIn(ctx context.Context, st *storage.Store, log *slog.Logger) {
	admins, _, err := st.ListAdmins(ctx, storage.Page{Limit: 2})
	if err != nil {
		return // the server starts all the same; the hint is a courtesy
	}
	for _, a := range admins {
		if a.Name != storage.BootstrapAdmin {
			return
		}
	}
	log.Warn("no admin yet: run `latchkey admin create NAME` (with this server's --database) for an owner and its admin token")
	log.Warn("or restart with LATCHKEY_BOOTSTRAP_TOKEN set (32+ characters) and call the admin API with it as the built-in owner \"bootstrap\"")
}

// newServer builds the HTTP server from the validated configuration.
func newServer(ctx context.Context, o *opened) (*server.Server, error) {
	cfg := o.cfg
	proxies, err := cfg.ProxyNets()
	if err != nil {
		return nil, err // Validate has run; this is unreachable
	}
	return server.New(ctx, o.store, server.Options{
		Issuer: cfg.Issuer, TokenLifetime: cfg.TokenLifetime, Secrets: o.secrets,
		BootstrapToken: cfg.BootstrapToken, SeparateAdmin: cfg.AdminListen != "", Logger: o.log,
		TokenFormat: cfg.TokenFormat, SigningAlgorithm: cfg.SigningAlgorithm, RequestTimeout: cfg.RequestTimeout,
		TrustedProxies:          proxies,
		ClientAuthLimit:         server.RateLimit{PerMinute: cfg.RateLimitFailures, Burst: cfg.RateLimitFailuresBurst},
		AdminAuthLimit:          server.RateLimit{PerMinute: cfg.RateLimitAdminFailures, Burst: cfg.RateLimitAdminFailuresBurst},
		IssuanceLimit:           server.IssuanceLimit{PerMinute: cfg.IntegrationTokenRate, Burst: cfg.IntegrationTokenBurst},
		MetricsIntegrationLabel: cfg.MetricsIntegrationLabel,
		JWKSFetchAllowPrivate:   cfg.JWKSFetchAllowPrivate,
		MetricsToken:            cfg.MetricsToken,
		MaxBodiesInFlight:       cfg.MaxBodiesInFlight,
	})
}

// listeners are serve's listening sockets, each with its http.Server.
type listeners struct {
	cfg   *config.Config
	log   *slog.Logger
	srv   *server.Server
	certs *certReloader // nil without TLS
	all   []listener
}

type listener struct {
	name string
	ln   *connLimiter
	srv  *http.Server
}

// listen opens a listener for h, at most maxConns connections at once.
func (ls *listeners) listen(name, addr string, h http.Handler, maxConns int) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", name, err)
	}
	probe := h
	if ls.certs != nil {
		probe = nil // see connLimiter
	}
	lim := newConnLimiter(ln, maxConns, probe)
	ls.srv.ListenerMetrics(name, lim)
	hs := &http.Server{
		Handler: h,
		// A client that has connected sends its request head at once; 5 s
		// allows for a retransmitted packet or two on a bad network, and
		// is how long a connection that never sends one can hold a place
		// under max_connections.
		ReadHeaderTimeout: 5 * time.Second,
		// How long one body may hold a body slot: a 1 MiB admin body
		// needs 100 KiB/s, a 16 KiB OAuth one 1.6 KiB/s. Only reading is
		// bounded; handlers run on request_timeout.
		ReadTimeout: 10 * time.Second,
		// Past the request timeout, so a request waiting on the database
		// still gets its 503 written.
		WriteTimeout: max(30*time.Second, ls.cfg.RequestTimeout+5*time.Second),
		// Above a load balancer's own idle timeout (75 s by default
		// against an AWS ALB's 60 s), so the balancer is the one to close
		// an idle connection and never sends a request down one latchkey
		// is closing.
		IdleTimeout:    ls.cfg.IdleTimeout,
		MaxHeaderBytes: 64 << 10,
		ConnState:      lim.connState,
		ErrorLog:       slog.NewLogLogger(ls.log.Handler(), slog.LevelWarn),
	}
	if ls.certs != nil {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: ls.certs.get}
	}
	ls.all = append(ls.all, listener{name, lim, hs})
	return nil
}

// serve starts serving on every listener; the channel reports the first
// that fails.
func (ls *listeners) serve(stdout io.Writer) <-chan error {
	errc := make(chan error, len(ls.all))
	scheme := "http"
	if ls.certs != nil {
		scheme = "https"
	}
	for _, l := range ls.all {
		ls.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String(), "scheme", scheme, "issuer", ls.cfg.Issuer, "max_connections", l.ln.max)
		fmt.Fprintf(stdout, "latchkey listening on %s (%s) for %s\n", l.ln.Addr(), l.name, scheme)
		go func() {
			serve := l.srv.Serve
			if ls.certs != nil {
				serve = func(ln net.Listener) error { return l.srv.ServeTLS(ln, "", "") }
			}
			if err := serve(l.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.name, err)
			}
		}()
	}
	return errc
}

// shutdown lets every listener's requests finish within shutdown_timeout,
// then closes what is left, and waits for each connection to be gone.
func (ls *listeners) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), ls.cfg.ShutdownTimeout)
	defer cancel()
	for _, l := range ls.all {
		if err := l.srv.Shutdown(ctx); err != nil {
			// Cut the stragglers off before the database closes under
			// them.
			ls.log.Warn("shutdown did not finish in time; closing the remaining connections", "listener", l.name, "err", err)
			l.srv.Close()
		}
		l.ln.wait()
	}
	ls.all = nil
}

// close closes the listeners that shutdown has not, when serve stops early.
func (ls *listeners) close() {
	for _, l := range ls.all {
		l.ln.Close()
	}
}

// purgeBatch is how many rows one purge statement deletes. Each batch is
// one transaction holding the SQLite writer and, in a cgo call, a CPU, so
// every concurrent request waits for it: batches ten times the size
// showed up in those requests' latency, while at this size the stalls are
// short and the per-statement overhead still small.
const purgeBatch = 100

// runJanitor purges dead tokens and key pairs every janitor_interval until
// ctx ends, and rotates the signing key once it is signing_key_rotation old.
func runJanitor(ctx context.Context, st *storage.Store, srv *server.Server, cfg *config.Config, log *slog.Logger) {
	t := time.NewTicker(cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := st.Purge(ctx, purgeBatch)
		if ctx.Err() == nil {
			srv.RecordJanitorPass(n, err)
		}
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("janitor: purge failed", "err", err)
		case n > 0:
			log.Info("janitor: purged expired rows", "rows", n)
		}
		if cfg.SigningKeyRotation > 0 {
			rotated, err := st.RotateSigningKeyIfOlder(ctx, cfg.SigningAlgorithm, cfg.SigningKeyRotation)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("janitor: signing key rotation failed", "err", err)
			case rotated:
				log.Info("janitor: rotated the signing key", "max_age", cfg.SigningKeyRotation)
			}
		}
	}
}

// certReloader serves tls_cert and tls_key, and picks up new files when
// they change on disk (a certificate renewed by cert-manager or certbot)
// without a restart. It looks at most once every certCheckInterval; a
// renewal that cannot be loaded is logged and the old certificate kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   time.Time
	checked time.Time
}

var certCheckInterval = 10 * time.Second

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(time.Now()); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) modified() (time.Time, error) {
	var latest time.Time
	for _, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return time.Time{}, err
		}
		if fi.ModTime().After(latest) {
			latest = fi.ModTime()
		}
	}
	return latest, nil
}

func (c *certReloader) load(now time.Time) error {
	mtime, err := c.modified()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert, c.mtime, c.checked = &cert, mtime, now
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if now.Sub(c.checked) < certCheckInterval {
		return c.cert, nil
	}
	c.checked = now
	if mtime, err := c.modified(); err == nil && mtime.After(c.mtime) {
		if err := c.load(now); err != nil {
			c.log.Error("tls: the certificate files changed but cannot be loaded; serving the previous certificate", "err", err)
		} else {
			c.log.Info("tls: loaded the renewed certificate", "cert", c.certFile)
		}
	}
	return c.cert, nil
}

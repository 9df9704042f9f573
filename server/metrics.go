package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchkey/latchkey/storage"
)

// metrics are the server's Prometheus metrics, in a registry of its own so
// that several servers (replicas in one test process) never collide.
//
// Client IDs are never labels: an attacker could invent them by the million.
// Integration names are labels only when the operator asks for it, and then
// only for integrations that exist.
type metrics struct {
	reg             *prometheus.Registry
	byIntegration   bool
	tokens          *prometheus.CounterVec
	introspections  *prometheus.CounterVec
	revocations     prometheus.Counter
	authFailures    *prometheus.CounterVec
	adminFailures   prometheus.Counter
	rateLimited     *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	janitorRuns     *prometheus.CounterVec
	janitorPurged   prometheus.Counter
	bodiesShed      prometheus.Counter
	durationByRoute sync.Map // route+code → prometheus.Observer

	// Resolved once: a label lookup hashes its values on every call.
	introspectedActive, introspectedInactive prometheus.Counter
	limitedBy                                map[string]prometheus.Counter
}

func newMetrics(store *storage.Store, byIntegration bool) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), byIntegration: byIntegration}
	perClient := func(labels ...string) []string {
		if byIntegration {
			return append(labels, "integration")
		}
		return labels
	}
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latchkey_tokens_issued_total",
		Help: "Access tokens issued at /oauth2/token, by format.",
	}, perClient("format"))
	m.introspections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latchkey_introspections_total",
		Help: "Tokens introspected at /oauth2/introspect, by result (active or inactive).",
	}, []string{"result"})
	m.revocations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latchkey_revocations_total",
		Help: "Successful requests to /oauth2/revoke (RFC 7009 answers 200 for unknown tokens too).",
	})
	m.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latchkey_client_auth_failures_total",
		Help: "Failed client authentications at the OAuth endpoints, by reason.",
	}, perClient("reason"))
	m.adminFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latchkey_admin_auth_failures_total",
		Help: "Admin API requests refused for a missing, invalid, expired or revoked admin token.",
	})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latchkey_rate_limited_total",
		Help: "Failed authentications held or answered 429, by the limit that slowed them: pair (address and client ID), address, client, global, admin_address, admin_global; and issuance, token requests over an integration's issuance cap.",
	}, []string{"limit"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "latchkey_http_request_duration_seconds",
		Help:    "Time from a request's arrival to its handler's return, by route and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "code"})
	m.janitorRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latchkey_janitor_runs_total",
		Help: "Janitor passes over expired tokens and key pairs, by result (ok or error).",
	}, []string{"result"})
	m.janitorPurged = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latchkey_janitor_purged_rows_total",
		Help: "Expired tokens and key pairs the janitor deleted.",
	})
	m.bodiesShed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "latchkey_request_bodies_shed_total",
		Help: "Requests answered 503 without reading their body because max_bodies_in_flight large bodies were being received.",
	})
	m.reg.MustRegister(m.tokens, m.introspections, m.revocations, m.authFailures, m.adminFailures,
		m.rateLimited, m.duration, m.janitorRuns, m.janitorPurged, m.bodiesShed,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	for name, db := range store.Pools() {
		m.reg.MustRegister(collectors.NewDBStatsCollector(db, name))
	}
	// Series that exist from the start, so a rate() over them is defined
	// before the first event.
	m.introspectedActive = m.introspections.WithLabelValues("active")
	m.introspectedInactive = m.introspections.WithLabelValues("inactive")
	m.limitedBy = map[string]prometheus.Counter{}
	for _, l := range []string{"pair", "address", "client", "global", "admin_address", "admin_global", "issuance"} {
		m.limitedBy[l] = m.rateLimited.WithLabelValues(l)
	}
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// guardMetrics keeps /metrics from unauthenticated remote callers: its
// counters (failures by reason, tokens by integration) would tell a
// stranger which client IDs exist and who is busy. It is open on the admin
// listener, which the operator keeps off the public network, and to
// callers on loopback that no proxy forwarded; anyone else needs the
// metrics_token as a bearer token.
func (s *Server) guardMetrics(next http.Handler) http.Handler {
	var want [32]byte
	if s.opts.MetricsToken != "" {
		want = sha256.Sum256([]byte(s.opts.MetricsToken))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.SeparateAdmin || s.localCaller(r) {
			next.ServeHTTP(w, r)
			return
		}
		if s.opts.MetricsToken == "" {
			writeError(w, http.StatusForbidden, "forbidden",
				"metrics are served on admin_listen, to loopback callers, or with metrics_token")
			return
		}
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(token))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="latchkey-metrics"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "send the metrics_token: Authorization: Bearer <metrics_token>")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localCaller reports whether r comes from this host itself, directly: a
// request a proxy forwarded is from wherever the proxy got it.
func (s *Server) localCaller(r *http.Request) bool {
	if r.Header.Get("X-Forwarded-For") != "" || r.Header.Get("Forwarded") != "" {
		return false
	}
	a, err := netip.ParseAddr(infoFrom(r.Context()).addr)
	return err == nil && a.Unmap().IsLoopback()
}

// request observes one request's duration. The observer for each
// route and code is looked up once; after that an observation is a map
// hit and an atomic add.
func (m *metrics) request(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	if code == 0 {
		code = http.StatusOK
	}
	key := routeCode{route, code}
	o, ok := m.durationByRoute.Load(key)
	if !ok {
		o, _ = m.durationByRoute.LoadOrStore(key, m.duration.WithLabelValues(route, strconv.Itoa(code)))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}

type routeCode struct {
	route string
	code  int
}

func (m *metrics) tokenIssued(format, integration string) {
	if m.byIntegration {
		m.tokens.WithLabelValues(format, integration).Inc()
		return
	}
	m.tokens.WithLabelValues(format).Inc()
}

// authFailed counts a failed client authentication; integration is empty
// unless the client ID named a real key pair.
func (m *metrics) authFailed(reason, integration string) {
	if m.byIntegration {
		m.authFailures.WithLabelValues(reason, integration).Inc()
		return
	}
	m.authFailures.WithLabelValues(reason).Inc()
}

// RecordJanitorPass counts one janitor pass in the metrics: the rows it
// purged, and whether an error stopped it. The janitor itself runs in
// the caller.
func (s *Server) RecordJanitorPass(purged int64, err error) {
	if err != nil {
		s.metrics.janitorRuns.WithLabelValues("error").Inc()
	} else {
		s.metrics.janitorRuns.WithLabelValues("ok").Inc()
	}
	s.metrics.janitorPurged.Add(float64(purged))
}

// watchBodySlots publishes how many of the body slots are taken.
func (m *metrics) watchBodySlots(slots chan struct{}) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "latchkey_request_bodies_in_flight",
		Help: "Requests receiving a body over 4 KiB now (at most max_bodies_in_flight).",
	}, func() float64 { return float64(len(slots)) }))
}

// ListenerStats are the figures of one listener's connections, which
// only the listener knows.
type ListenerStats interface {
	// Open and Idle count the connections open now, and those of them
	// waiting for their next request.
	Open() int
	Idle() int
	// Shed counts connections refused at the cap; Evicted counts idle
	// connections closed to make room for new ones.
	Shed() uint64
	Evicted() uint64
}

// ListenerMetrics publishes a listener's connection figures under its
// name ("public", "admin"), read at each scrape.
func (s *Server) ListenerMetrics(name string, l ListenerStats) {
	labels := prometheus.Labels{"listener": name}
	s.metrics.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_connections_open", ConstLabels: labels,
			Help: "Connections open on the listener (at most max_connections on the public one).",
		}, func() float64 { return float64(l.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latchkey_connections_idle", ConstLabels: labels,
			Help: "Open keep-alive connections waiting for their next request.",
		}, func() float64 { return float64(l.Idle()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "latchkey_connections_shed_total", ConstLabels: labels,
			Help: "Connections refused at the cap with no idle connection to close: answered 503, or closed at once.",
		}, func() float64 { return float64(l.Shed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "latchkey_connections_evicted_total", ConstLabels: labels,
			Help: "Idle keep-alive connections closed at the cap to make room for a new connection.",
		}, func() float64 { return float64(l.Evicted()) }),
	)
}

package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// reqInfo travels in a request's context from the outermost middleware to
// the handlers and back: handlers fill in what the access log and the
// metrics need to know (which route ran, why authentication failed, which
// integration was served) without a second pass over the request.
type reqInfo struct {
	id    string
	route string
	// addr is the client's address, after trusted proxies.
	addr string
	// authFailure is why client authentication failed; integration is
	// the authenticated (or, with a wrong secret, claimed) integration.
	authFailure string
	integration string
	// clientID is the client ID an OAuth request presented, once its
	// credentials are known to be in a supported form.
	clientID string
}

type infoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(infoKey{}).(*reqInfo)
	if ri == nil {
		return &reqInfo{} // a handler run outside observe, as in some tests
	}
	return ri
}

// maxRequestIDLen bounds an X-Request-ID taken from a client; anything
// longer, or with characters beyond these, is replaced rather than logged.
const maxRequestIDLen = 128

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-_.:/+=@", c) >= 0) {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random hex digits: unique enough to find one
// request in the logs, and cheap (math/rand/v2 is a per-thread ChaCha8).
func newRequestID() string {
	var b [16]byte
	const hex = "0123456789abcdef"
	n := rand.Uint64()
	for i := range b {
		b[i] = hex[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// observe is the outermost middleware. It gives the request its ID
// (a well-formed X-Request-ID from the client, else a new one, echoed in
// the response) and its deadline (so a database that stops answering turns
// into a 503 within request_timeout instead of a hung client), turns a handler panic into a logged 500 instead of a
// dropped connection, and afterwards writes one access-log line and the
// request's latency metric. The log line has the path, with anything
// shaped like a credential redacted, but never the query or the body, where
// careless clients put credentials.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: r.Header.Get("X-Request-ID"), addr: s.clientAddr(r)}
		if !validRequestID(ri.id) {
			ri.id = newRequestID()
		}
		w.Header().Set("X-Request-ID", ri.id)
		rec := &statusRecorder{ResponseWriter: w}
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), infoKey{}, ri), s.opts.RequestTimeout)
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(ctx, "handler panic", "method", r.Method, "path", redact(r.URL.Path), "panic", fmt.Sprint(p))
				if rec.status == 0 {
					writeError(rec, http.StatusInternalServerError, "server_error", "internal error")
				}
			}
			elapsed := time.Since(start)
			s.metrics.request(ri.route, rec.status, elapsed)
			if !s.log.Enabled(ctx, slog.LevelInfo) {
				return
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", redact(r.URL.Path)),
				slog.Int("status", rec.status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("remote", ri.addr),
			}
			if ri.integration != "" {
				attrs = append(attrs, slog.String("integration", ri.integration))
			}
			if ri.authFailure != "" {
				attrs = append(attrs, slog.String("auth_failure", ri.authFailure))
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// requestIDHandler adds the request ID to every log record made with a
// request's context, so an error logged deep in a handler can be matched
// to its access-log line.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, rec slog.Record) error {
	if ri, ok := ctx.Value(infoKey{}).(*reqInfo); ok && ri.id != "" {
		rec.AddAttrs(slog.String("request_id", ri.id))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// clientAddr is the address the request came from. X-Forwarded-For is
// believed only when the peer is a trusted proxy, and then read from the
// right: each trusted hop appends the address it received from, so the
// rightmost address that is not itself a trusted proxy is the client (the
// entries left of it are whatever the client chose to send).
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.opts.TrustedProxies) == 0 || !s.trusted(host) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := hops[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			a, err := netip.ParseAddr(hop)
			if err != nil {
				// Garbage from a hop we trust to append correctly means
				// the header is not to be relied on; the proxy it is.
				return host
			}
			a = a.Unmap()
			if !s.trustedAddr(a) {
				return a.String()
			}
			host = a.String()
		}
	}
	return host
}

func (s *Server) trusted(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && s.trustedAddr(a.Unmap())
}

func (s *Server) trustedAddr(a netip.Addr) bool {
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedTLS reports whether a trusted proxy says the client reached it
// over HTTPS.
func (s *Server) forwardedTLS(r *http.Request) bool {
	if len(s.opts.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	return err == nil && s.trusted(host) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

package server

import (
	"net/http"
	"strconv"
)

// smallBody is the largest declared body a request may send without a
// body slot. Such a body costs about what the connection's own 4 KiB read
// buffer does, and connections are already capped (max_connections), so
// slots are kept for the bodies that can be large. Every OAuth request a
// real client sends fits: a client_secret_post form is about 200 bytes, a
// private_key_jwt assertion signed with RS256 about 1 KiB.
const smallBody = 4 << 10

// DefaultMaxBodiesInFlight is how many large bodies are received at once
// unless configured. At the admin API's 1 MiB limit that is 64 MiB of
// body bytes at worst (the JSON decoder's buffer may double it), against
// a few KiB for each of the many small requests it never delays.
const DefaultMaxBodiesInFlight = 64

// bodyRetryAfter is the Retry-After of a request refused a body slot, in
// seconds: a slot frees as soon as a body has arrived and been answered,
// and a slow body is cut off by the connection's read timeout.
const bodyRetryAfter = 1

// limitBodies admits at most MaxBodiesInFlight requests at once that are
// receiving a body over smallBody, or of unknown length (chunked). A slot
// is held until the handler returns, because the handler keeps what it
// decoded from the body until then. A request over the limit is answered
// 503 at once, before a byte of its body is read, so a crowd of slow
// uploads costs a bounded amount of memory however many connections
// carry them; requests without a body, small ones, and the health and
// metrics endpoints are never held back by them.
func (s *Server) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !needsBodySlot(r) {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case s.bodySlots <- struct{}{}:
		default:
			s.metrics.bodiesShed.Inc()
			h := w.Header()
			h.Set("Retry-After", strconv.Itoa(bodyRetryAfter))
			// The body stays unread, so the connection cannot carry
			// another request.
			h.Set("Connection", "close")
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable",
				"too many requests are sending a body at once; try again in "+strconv.Itoa(bodyRetryAfter)+" s")
			return
		}
		defer func() { <-s.bodySlots }()
		next.ServeHTTP(w, r)
	})
}

func needsBodySlot(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	if r.Body == nil || r.Body == http.NoBody {
		return false
	}
	return r.ContentLength < 0 || r.ContentLength > smallBody
}

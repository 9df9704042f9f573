package server

import (
	"net/http"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// findAudit reads one page of GET /admin/audit: the events that match every
// filter given, ?integration=, ?actor=, ?action=, ?since= (inclusive) and
// ?until= (exclusive), times in RFC 3339. A time that does not parse is
// ErrInvalid, so the caller answers 400 before any lookup.
func (s *Server) findAudit(r *http.Request, p storage.Page) ([]storage.AuditEvent, string, error) {
	q := r.URL.Query()
	f := storage.AuditFilter{Integration: q.Get("integration"), Actor: q.Get("actor"), Action: q.Get("action")}
	for _, b := range []struct {
		param string
		dst   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		v := q.Get(b.param)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, "", &storage.InvalidError{Reason: b.param + " must be an RFC 3339 time, e.g. 2024-05-01T12:00:00Z (a + in its offset is %2B in a URL)"}
		}
		*b.dst = t
	}
	return s.store.FindAuditEvents(r.Context(), f, p)
}

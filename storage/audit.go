package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

type auditRow struct {
	ID         int64 `gorm:"primaryKey"`
	OccurredAt time.Time
	ActorType  string
	Actor      string
	Action     string
	ObjectType string
	Object     string
	RemoteAddr string
	Details    string
}

func (auditRow) TableName() string { return "audit_events" }

// audit appends an event inside tx, so the event exists exactly when the
// change it describes does. Callers pass no secret in details.
func (s *Store) audit(tx *gorm.DB, by Actor, action, objectType, object string, details map[string]any) error {
	row, err := s.newAuditRow(by, action, objectType, object, details)
	if err != nil {
		return err
	}
	return tx.Create(row).Error
}

func (s *Store) newAuditRow(by Actor, action, objectType, object string, details map[string]any) (*auditRow, error) {
	if details == nil {
		details = map[string]any{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("audit %s: %w", action, err)
	}
	return &auditRow{
		OccurredAt: s.clock(), ActorType: by.Type, Actor: by.Name, Action: action,
		ObjectType: objectType, Object: object, RemoteAddr: by.RemoteAddr, Details: string(b),
	}, nil
}

// AppendAuditEvents records events that describe no change of the store's
// own, such as failed admin authentications, in one transaction. Each
// event's Time is the store's clock at the write and its ID is assigned;
// the fields passed in for them are ignored. Details must hold no secret.
func (s *Store) AppendAuditEvents(ctx context.Context, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([]*auditRow, len(events))
	for i, e := range events {
		var err error
		rows[i], err = s.newAuditRow(Actor{Type: e.ActorType, Name: e.Actor, RemoteAddr: e.RemoteAddr},
			e.Action, e.ObjectType, e.Object, e.Details)
		if err != nil {
			return err
		}
	}
	err := s.tx(ctx, func(tx *gorm.DB) error {
		for _, r := range rows {
			r.ID = 0 // a retried transaction must not reuse the IDs of the attempt rolled back
		}
		return tx.CreateInBatches(rows, 100).Error
	})
	return translate("append audit events", err)
}

// changes are an update's audit details: the old and the new value of
// every field the update changed, as the admin API shows them. Updates of
// any kind record them the same way, as {"changes": {field: {"old",
// "new"}}}, so a reader of the log needs to learn one shape.
type changes map[string]any

// note records field's change from old to new unless the two are equal,
// and reports whether they differ. Values are compared as they are
// encoded: a nil and an empty list are both "no values" only if the
// caller makes them one; the store always uses empty lists.
func (c changes) note(field string, old, new any) bool {
	if reflect.DeepEqual(old, new) {
		return false
	}
	c[field] = map[string]any{"old": old, "new": new}
	return true
}

func (c changes) details() map[string]any { return map[string]any{"changes": map[string]any(c)} }

// AuditFilter narrows a listing of audit events; an event is listed when it
// matches every field that is set.
type AuditFilter struct {
	// Integration keeps the events about the integration of that name
	// (its creation, changes, regenerations, revoked credentials,
	// deletion).
	Integration string
	// Actor keeps the events done by the admin, integration or system
	// actor of that name.
	Actor string
	// Action keeps the events of that action, e.g. "integration.update".
	Action string
	// Since keeps the events that occurred at or after it; Until those
	// before it, so consecutive windows neither overlap nor leave gaps.
	// Zero means no bound.
	Since, Until time.Time
}

// ListAuditEvents returns events newest first and the next page's token.
func (s *Store) ListAuditEvents(ctx context.Context, p Page) ([]AuditEvent, string, error) {
	return s.FindAuditEvents(ctx, AuditFilter{}, p)
}

// FindAuditEvents returns the events f matches, newest first (by time,
// then by ID among events of one instant), and the next page's token. A
// page token carries no filter: the next page is asked for with the same
// filter. ErrInvalid when Until is not after Since or the page token is not
// one this method issued.
//
// Every filter is an index range scan in this order (migration 0010), so
// a page costs about its own length however long the log is; combined
// filters scan one index and test the rest.
func (s *Store) FindAuditEvents(ctx context.Context, f AuditFilter, p Page) ([]AuditEvent, string, error) {
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, "", invalidf("until must be after since")
	}
	after, err := p.cursor()
	if err != nil {
		return nil, "", err
	}
	q, err := auditQuery(s.r.WithContext(ctx), f, after, p.limit()+1)
	if err != nil {
		return nil, "", err
	}
	var rows []auditRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, "", unavailable("list audit events", err)
	}
	next := ""
	if len(rows) > p.limit() {
		rows = rows[:p.limit()]
		last := rows[len(rows)-1]
		next = pageToken(timeCursor(last.OccurredAt, last.ID))
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = AuditEvent{ID: r.ID, Time: r.OccurredAt.UTC(), ActorType: r.ActorType, Actor: r.Actor, Action: r.Action,
			ObjectType: r.ObjectType, Object: r.Object, RemoteAddr: r.RemoteAddr}
		if err := json.Unmarshal([]byte(r.Details), &out[i].Details); err != nil {
			return nil, "", fmt.Errorf("list audit events: event %d: %w", r.ID, err)
		}
	}
	return out, next, nil
}

// auditQuery is FindAuditEvents' query: the events f matches after the
// cursor (none: from the newest), newest first, at most limit of them.
func auditQuery(q *gorm.DB, f AuditFilter, after string, limit int) (*gorm.DB, error) {
	if after != "" {
		at, id, ok := parseTimeCursor(after)
		if !ok {
			return nil, invalidf("page_token is not one this server issued")
		}
		q = q.Where("(occurred_at, id) < (?, ?)", at, id)
	}
	if f.Integration != "" {
		q = q.Where("object_type = ? AND object = ?", "integration", f.Integration)
	}
	if f.Actor != "" {
		q = q.Where("actor = ?", f.Actor)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		q = q.Where("occurred_at >= ?", ceilMicro(f.Since))
	}
	if !f.Until.IsZero() {
		q = q.Where("occurred_at < ?", ceilMicro(f.Until))
	}
	return q.Order("occurred_at DESC, id DESC").Limit(limit), nil
}

// timeCursor is where a page ordered by a time and then an ID ends: the
// time and ID of its last row (audit events, integrations by creation).
func timeCursor(at time.Time, id int64) string {
	return at.UTC().Format(time.RFC3339Nano) + " " + strconv.FormatInt(id, 10)
}

func parseTimeCursor(c string) (time.Time, int64, bool) {
	ts, n, ok := strings.Cut(c, " ")
	if !ok {
		return time.Time{}, 0, false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, 0, false
	}
	id, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return time.Time{}, 0, false
	}
	return at.UTC(), id, true
}

// textTimeCursor is timeCursor for a listing whose rows sharing a time are
// ordered by a text column (access tokens by request ID).
func textTimeCursor(at time.Time, v string) string {
	return at.UTC().Format(time.RFC3339Nano) + " " + v
}

func parseTextTimeCursor(c string) (time.Time, string, bool) {
	ts, v, ok := strings.Cut(c, " ")
	if !ok || v == "" {
		return time.Time{}, "", false
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", false
	}
	return at.UTC(), v, true
}

// ceilMicro rounds t up to the microsecond the store keeps times in, so a
// bound between two microseconds keeps the events on its side of it: an
// event at 12:00:00.000001 is before a since of 12:00:00.0000015, and
// before an until of it too.
func ceilMicro(t time.Time) time.Time {
	t = t.UTC()
	if c := t.Truncate(time.Microsecond); !c.Equal(t) {
		return c.Add(time.Microsecond)
	}
	return t
}

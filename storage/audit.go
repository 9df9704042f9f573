package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
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
	if details == nil {
		details = map[string]any{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return tx.Create(&auditRow{
		OccurredAt: s.clock(), ActorType: by.Type, Actor: by.Name, Action: action,
		ObjectType: objectType, Object: object, RemoteAddr: by.RemoteAddr, Details: string(b),
	}).Error
}

// ListAuditEvents returns events newest first and the next page's token.
func (s *Store) ListAuditEvents(ctx context.Context, p Page) ([]AuditEvent, string, error) {
	return s.ListIntegrationAuditEvents(ctx, p, "")
}

// ListIntegrationAuditEvents is ListAuditEvents narrowed to the events
// about one integration (its creation, changes, regenerations, deletion);
// an empty name lists every event.
func (s *Store) ListIntegrationAuditEvents(ctx context.Context, p Page, integration string) ([]AuditEvent, string, error) {
	q := s.r.WithContext(ctx)
	if integration != "" {
		q = q.Where("object_type = ? AND object = ?", "integration", integration)
	}
	rows, next, err := findPage(q, p, pageOrder{column: "id", desc: true, integer: true}, "list audit events",
		func(r *auditRow) string { return strconv.FormatInt(r.ID, 10) })
	if err != nil {
		return nil, "", err
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = AuditEvent{ID: r.ID, Time: r.OccurredAt, ActorType: r.ActorType, Actor: r.Actor, Action: r.Action,
			ObjectType: r.ObjectType, Object: r.Object, RemoteAddr: r.RemoteAddr}
		if err := json.Unmarshal([]byte(r.Details), &out[i].Details); err != nil {
			return nil, "", fmt.Errorf("list audit events: event %d: %w", r.ID, err)
		}
	}
	return out, next, nil
}

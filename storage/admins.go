package storage

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

func (Admin) TableName() string { return "admins" }

type adminTokenRow struct {
	Seq         int64 `gorm:"primaryKey"`
	PublicID    string
	AdminID     int64
	TokenHash   []byte
	Description string
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	LastUsedAt  *time.Time
}

func (adminTokenRow) TableName() string { return "admin_tokens" }

func (r *adminTokenRow) token() *AdminToken {
	return &AdminToken{ID: r.PublicID, AdminID: r.AdminID, Description: r.Description,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt}
}

// Admin token expiry is given in days; -1 means never.
const (
	NeverExpires            = -1
	DefaultAdminTokenDays   = 90
	MaxAdminTokenDays       = 3650
	lastUsedWriteResolution = time.Minute
)

// CreateAdmin creates an admin and its first admin token (expiring after
// days, NeverExpires for never) and audits both, in one transaction. The
// returned string is the only copy of the token. ErrConflict if the name is
// taken or is BootstrapAdmin, ErrInvalid for a bad name or expiry.
func (s *Store) CreateAdmin(ctx context.Context, name string, days int, by Actor) (*Admin, *AdminToken, string, error) {
	if err := checkName(name); err != nil {
		return nil, nil, "", err
	}
	if name == BootstrapAdmin {
		// Whoever holds a bootstrap token configured later would act as
		// this person and see their tokens.
		return nil, nil, "", fmt.Errorf("create admin %q: the name is reserved for the bootstrap token: %w", name, ErrConflict)
	}
	if err := checkDays(days); err != nil {
		return nil, nil, "", err
	}
	a := &Admin{Name: name, CreatedAt: s.clock()}
	var t *AdminToken
	var secret string
	err := s.tx(ctx, func(tx *gorm.DB) error {
		a.ID = 0 // a retried transaction must not reuse the ID of the attempt rolled back
		if err := tx.Create(a).Error; err != nil {
			return err
		}
		if err := s.audit(tx, by, "admin.create", "admin", name, nil); err != nil {
			return err
		}
		var err error
		t, secret, err = s.insertAdminToken(tx, a, "initial token", days, by)
		return err
	})
	if err != nil {
		return nil, nil, "", translate(fmt.Sprintf("create admin %q", name), err)
	}
	return a, t, secret, nil
}

// EnsureAdmin returns the admin called name, creating it (and auditing
// that) if absent. It is how the bootstrap admin comes to exist; the usual
// case, an admin that exists, is one read.
func (s *Store) EnsureAdmin(ctx context.Context, name string) (*Admin, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	a := &Admin{}
	err := s.r.WithContext(ctx).Where("name = ?", name).Take(a).Error
	if err == nil {
		return a, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, translate(fmt.Sprintf("ensure admin %q", name), err)
	}
	err = s.tx(ctx, func(tx *gorm.DB) error {
		a = &Admin{Name: name, CreatedAt: s.clock()}
		err := tx.Where("name = ?", name).Take(a).Error
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		if err := tx.Create(a).Error; err != nil {
			return err
		}
		return s.audit(tx, Actor{Type: "system", Name: "latchkey"}, "admin.create", "admin", name, nil)
	})
	if err != nil {
		return nil, translate(fmt.Sprintf("ensure admin %q", name), err)
	}
	return a, nil
}

// ListAdmins returns admins ordered by name and the next page's token.
func (s *Store) ListAdmins(ctx context.Context, p Page) ([]Admin, string, error) {
	return findPage(s.r.WithContext(ctx), p, pageOrder{column: "name"}, "list admins",
		func(a *Admin) string { return a.Name })
}

// DeleteAdmin deletes the admin called name and, with it, every admin token
// it holds, and audits it, atomically. ErrNotFound if absent.
func (s *Store) DeleteAdmin(ctx context.Context, name string, by Actor) error {
	err := s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Where("name = ?", name).Delete(&Admin{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return s.audit(tx, by, "admin.delete", "admin", name, nil)
	})
	return translate(fmt.Sprintf("delete admin %q", name), err)
}

func checkDays(days int) error {
	if days != NeverExpires && (days < 1 || days > MaxAdminTokenDays) {
		return invalidf("expires_in_days must be -1 (never) or between 1 and %d", MaxAdminTokenDays)
	}
	return nil
}

// CreateAdminToken mints an admin token for admin, expiring after days
// (NeverExpires for never), and audits it. The returned string is the only
// copy of the token. ErrInvalid for bad input, ErrNotFound if the admin is
// gone.
func (s *Store) CreateAdminToken(ctx context.Context, admin *Admin, description string, days int, by Actor) (*AdminToken, string, error) {
	if err := checkDescription(description); err != nil {
		return nil, "", err
	}
	if err := checkDays(days); err != nil {
		return nil, "", err
	}
	var t *AdminToken
	var secret string
	err := s.tx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&Admin{}).Where("id = ?", admin.ID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		var err error
		t, secret, err = s.insertAdminToken(tx, admin, description, days, by)
		return err
	})
	if err != nil {
		return nil, "", translate(fmt.Sprintf("create admin token for %q", admin.Name), err)
	}
	return t, secret, nil
}

func (s *Store) insertAdminToken(tx *gorm.DB, admin *Admin, description string, days int, by Actor) (*AdminToken, string, error) {
	now := s.clock()
	secret := s.creds.NewAdminToken()
	hash := s.creds.HashSecret(secret)
	row := adminTokenRow{PublicID: newPublicID(), AdminID: admin.ID, TokenHash: hash, Description: description, CreatedAt: now}
	if days != NeverExpires {
		exp := now.Add(time.Duration(days) * 24 * time.Hour)
		row.ExpiresAt = &exp
	}
	if err := tx.Create(&row).Error; err != nil {
		return nil, "", err
	}
	err := s.audit(tx, by, "admin_token.create", "admin_token", row.PublicID, map[string]any{
		"admin": admin.Name, "description": description, "expires_in_days": days,
	})
	return row.token(), secret, err
}

// newPublicID names an admin token in listings and URLs; it is not a
// credential.
func newPublicID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return "adt_" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// ListAdminTokens returns the admin's unexpired tokens, oldest first, and
// the next page's token.
func (s *Store) ListAdminTokens(ctx context.Context, adminID int64, p Page) ([]*AdminToken, string, error) {
	q := s.r.WithContext(ctx).Where("admin_id = ? AND (expires_at IS NULL OR expires_at > ?)", adminID, s.clock())
	rows, next, err := findPage(q, p, pageOrder{column: "seq", integer: true}, "list admin tokens",
		func(r *adminTokenRow) string { return strconv.FormatInt(r.Seq, 10) })
	if err != nil {
		return nil, "", err
	}
	out := make([]*AdminToken, len(rows))
	for i := range rows {
		out[i] = rows[i].token()
	}
	return out, next, nil
}

// RevokeAdminToken deletes the admin token id if it belongs to adminID, and
// audits it. Another admin's token is ErrNotFound, so ids cannot be probed.
func (s *Store) RevokeAdminToken(ctx context.Context, adminID int64, id string, by Actor) error {
	err := s.tx(ctx, func(tx *gorm.DB) error {
		res := tx.Where("public_id = ? AND admin_id = ?", id, adminID).Delete(&adminTokenRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return s.audit(tx, by, "admin_token.revoke", "admin_token", id, nil)
	})
	return translate(fmt.Sprintf("revoke admin token %q", id), err)
}

// AuthenticateAdmin returns the admin holding token, or ErrNotFound when the
// token is unknown, revoked or expired. Callers reject a malformed token
// before it costs a lookup (credential.ValidChecksummed). The token's
// last-used time is refreshed at most once a minute, to keep admin reads
// from queueing behind the writer.
func (s *Store) AuthenticateAdmin(ctx context.Context, token string) (*Admin, error) {
	now := s.clock()
	var row adminTokenRow
	err := s.r.WithContext(ctx).Where("token_hash IN ? AND (expires_at IS NULL OR expires_at > ?)",
		s.creds.SecretHashes(token), now).Take(&row).Error
	if err != nil {
		return nil, translate("authenticate admin", err)
	}
	var a Admin
	if err := s.r.WithContext(ctx).Where("id = ?", row.AdminID).Take(&a).Error; err != nil {
		return nil, translate("authenticate admin", err)
	}
	if row.LastUsedAt == nil || now.Sub(*row.LastUsedAt) >= lastUsedWriteResolution {
		// Bookkeeping: a busy writer must not turn a valid token away.
		err := s.w.WithContext(ctx).Model(&adminTokenRow{}).Where("seq = ?", row.Seq).Update("last_used_at", now).Error
		if err != nil {
			s.log.Warn("admin token: could not record its last use", "id", row.PublicID, "err", err)
		}
	}
	return &a, nil
}

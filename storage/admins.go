package storage

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
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
	Permissions *string // see permissionsColumn
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	LastUsedAt  *time.Time
}

func (adminTokenRow) TableName() string { return "admin_tokens" }

func (r *adminTokenRow) token() *AdminToken {
	return &AdminToken{ID: r.PublicID, AdminID: r.AdminID, Description: r.Description,
		Permissions: permissionsFrom(r.Permissions), CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, LastUsedAt: r.LastUsedAt}
}

// Admin token expiry is given in days; -1 means never.
const (
	NeverExpires            = -1
	DefaultAdminTokenDays   = 90
	MaxAdminTokenDays       = 3650
	lastUsedWriteResolution = time.Minute
)

// ExpiredAdminTokenRetention is how long an expired admin token stays
// listed (never authenticating) before the janitor deletes it. An admin
// whose script starts failing needs to see that its token expired, and
// when, rather than find it gone as if it had been revoked or never
// existed; a month covers a monthly job noticing, and then the list is
// tidied.
const ExpiredAdminTokenRetention = 30 * 24 * time.Hour

// CreateAdmin creates an admin with role and its first admin token
// (expiring after days, NeverExpires for never; following the role) and
// audits both, in one transaction. The returned string is the only copy of
// the token. ErrConflict if the name is taken or is BootstrapAdmin,
// ErrInvalid for a bad name, role or expiry.
func (s *Store) CreateAdmin(ctx context.Context, name string, role Role, days int, by Actor) (*Admin, *AdminToken, string, error) {
	if err := checkName(name); err != nil {
		return nil, nil, "", err
	}
	if err := checkRole(role); err != nil {
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
	a := &Admin{Name: name, Role: role, CreatedAt: s.clock()}
	var t *AdminToken
	var secret string
	err := s.tx(ctx, func(tx *gorm.DB) error {
		a.ID = 0 // a retried transaction must not reuse the ID of the attempt rolled back
		if err := tx.Create(a).Error; err != nil {
			return err
		}
		if err := s.audit(tx, by, "admin.create", "admin", name, map[string]any{"role": role}); err != nil {
			return err
		}
		var err error
		t, secret, err = s.insertAdminToken(tx, a, "initial token", days, nil, by)
		return err
	})
	if err != nil {
		return nil, nil, "", translate(fmt.Sprintf("create admin %q", name), err)
	}
	return a, t, secret, nil
}

// EnsureAdmin returns the admin called name, creating it as an owner (and
// auditing that) if absent. It is how the bootstrap admin comes to exist;
// the usual case, an admin that exists, is one read.
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
		a = &Admin{Name: name, Role: RoleOwner, CreatedAt: s.clock()}
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
// it holds, and audits it, atomically. ErrNotFound if absent; a
// *ConflictError if it is the last owner (see lockOwnerChange).
func (s *Store) DeleteAdmin(ctx context.Context, name string, by Actor) error {
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		a, err := s.lockOwnerChange(tx, name, true, "delete")
		if err != nil {
			return err
		}
		if err := tx.Where("id = ?", a.ID).Delete(&Admin{}).Error; err != nil {
			return err
		}
		return s.audit(tx, by, "admin.delete", "admin", name, nil)
	})
	return translateAdmin(fmt.Sprintf("delete admin %q", name), err)
}

func checkDays(days int) error {
	if days != NeverExpires && (days < 1 || days > MaxAdminTokenDays) {
		return invalidf("expires_in_days must be -1 (never) or between 1 and %d", MaxAdminTokenDays)
	}
	return nil
}

// CreateAdminToken mints an admin token for admin, expiring after days
// (NeverExpires for never) and narrowed to perms (nil: following the
// admin's role), and audits it. The returned string is the only copy of
// the token. ErrInvalid for bad input, for a permission the admin's role
// (as stored when the token is made) lacks, and for BootstrapAdmin, which
// holds no tokens: it is a break-glass key, and nothing it did may outlive
// its removal from config. ErrNotFound if the admin is gone.
func (s *Store) CreateAdminToken(ctx context.Context, admin *Admin, description string, days int, perms []Permission, by Actor) (*AdminToken, string, error) {
	if err := checkDescription(description); err != nil {
		return nil, "", err
	}
	if err := checkDays(days); err != nil {
		return nil, "", err
	}
	if admin.Name == BootstrapAdmin {
		return nil, "", invalidf("the bootstrap admin cannot hold admin tokens; create an admin and mint tokens for it")
	}
	perms, err := NormalizePermissions(perms)
	if err != nil {
		return nil, "", err
	}
	var t *AdminToken
	var secret string
	err = s.tx(ctx, func(tx *gorm.DB) error {
		var roles []Role
		if err := tx.Model(&Admin{}).Where("id = ?", admin.ID).Pluck("role", &roles).Error; err != nil {
			return err
		}
		if len(roles) == 0 {
			return ErrNotFound
		}
		for _, p := range perms {
			if !slices.Contains(RolePermissions(roles[0]), p) {
				return invalidf("permission %s is not one the role %s has", p, roles[0])
			}
		}
		var err error
		t, secret, err = s.insertAdminToken(tx, admin, description, days, perms, by)
		return err
	})
	if err != nil {
		return nil, "", translate(fmt.Sprintf("create admin token for %q", admin.Name), err)
	}
	return t, secret, nil
}

func (s *Store) insertAdminToken(tx *gorm.DB, admin *Admin, description string, days int, perms []Permission, by Actor) (*AdminToken, string, error) {
	now := s.clock()
	secret := s.creds.NewAdminToken()
	hash := s.creds.HashSecret(secret)
	row := adminTokenRow{PublicID: newPublicID(), AdminID: admin.ID, TokenHash: hash, Description: description,
		Permissions: permissionsColumn(perms), CreatedAt: now}
	if days != NeverExpires {
		exp := now.Add(time.Duration(days) * 24 * time.Hour)
		row.ExpiresAt = &exp
	}
	if err := tx.Create(&row).Error; err != nil {
		return nil, "", err
	}
	details := map[string]any{"admin": admin.Name, "description": description, "expires_in_days": days}
	if perms != nil {
		details["permissions"] = perms
	}
	err := s.audit(tx, by, "admin_token.create", "admin_token", row.PublicID, details)
	return row.token(), secret, err
}

// newPublicID names an admin token in listings and URLs; it is not a
// credential.
func newPublicID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return "adt_" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// ListAdminTokens returns the admin's tokens, oldest first, and the next
// page's token: the live ones and those that expired less than
// ExpiredAdminTokenRetention ago (their ExpiresAt is in the past, and
// AuthenticateAdmin refuses them).
func (s *Store) ListAdminTokens(ctx context.Context, adminID int64, p Page) ([]*AdminToken, string, error) {
	q := s.r.WithContext(ctx).Where("admin_id = ? AND (expires_at IS NULL OR expires_at > ?)",
		adminID, s.clock().Add(-ExpiredAdminTokenRetention))
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

// AuthenticateAdmin returns the admin holding token, with its role, and
// the token itself, whose Permissions, with the role, say what the request
// may do (EffectivePermissions). ErrNotFound when the token is unknown,
// revoked or expired, or is held by BootstrapAdmin (a token the previous
// release minted for it during an upgrade: see migration 0008). Callers
// reject a malformed token before it costs a lookup
// (credential.ValidChecksummed). The token's last-used time is refreshed
// at most once a minute, to keep admin reads from queueing behind the
// writer.
func (s *Store) AuthenticateAdmin(ctx context.Context, token string) (*Admin, *AdminToken, error) {
	now := s.clock()
	var row adminTokenRow
	err := s.r.WithContext(ctx).Where("token_hash IN ? AND (expires_at IS NULL OR expires_at > ?)",
		s.creds.SecretHashes(token), now).Take(&row).Error
	if err != nil {
		return nil, nil, translate("authenticate admin", err)
	}
	var a Admin
	if err := s.r.WithContext(ctx).Where("id = ?", row.AdminID).Take(&a).Error; err != nil {
		return nil, nil, translate("authenticate admin", err)
	}
	if a.Name == BootstrapAdmin {
		return nil, nil, fmt.Errorf("authenticate admin: a token of the bootstrap admin: %w", ErrNotFound)
	}
	if row.LastUsedAt == nil || now.Sub(*row.LastUsedAt) >= lastUsedWriteResolution {
		// Bookkeeping: a busy writer must not turn a valid token away.
		err := s.w.WithContext(ctx).Model(&adminTokenRow{}).Where("seq = ?", row.Seq).Update("last_used_at", now).Error
		if err != nil {
			s.log.Warn("admin token: could not record its last use", "id", row.PublicID, "err", err)
		} else {
			row.LastUsedAt = &now
		}
	}
	return &a, row.token(), nil
}

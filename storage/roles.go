package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"
)

// ConflictError is the error of a change that the state of other objects
// forbids, such as demoting the last owner. Reason says why, in words fit
// to show whoever asked; errors.Is reports it as ErrConflict.
type ConflictError struct {
	Reason string
}

func (e *ConflictError) Error() string { return e.Reason }

// Is makes a *ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func checkRole(r Role) error {
	if !ValidRole(r) {
		return invalidf("role %q is not one of %s", r, joinRoles())
	}
	return nil
}

func joinRoles() string {
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// NormalizePermissions checks every permission and returns them without
// duplicates, in the table's order; nil stays nil (the role's), and an
// empty list stays empty (a token that may do nothing but say whose it
// is). ErrInvalid names the first unknown permission.
func NormalizePermissions(ps []Permission) ([]Permission, error) {
	if ps == nil {
		return nil, nil
	}
	for _, p := range ps {
		if !ValidPermission(p) {
			return nil, invalidf("permission %q is not one of %s", p, joinPermissions(AllPermissions()))
		}
	}
	out := []Permission{}
	for _, p := range AllPermissions() {
		if slices.Contains(ps, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func joinPermissions(ps []Permission) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return strings.Join(names, " ")
}

// EffectivePermissions is what a request may do with a token narrowed to
// tokenPerms (nil: not narrowed) whose admin has role: the role's
// permissions, less those the token was narrowed away from, in the
// table's order. A token keeps following its admin's role: demoting the
// admin narrows every token it holds at once.
func EffectivePermissions(role Role, tokenPerms []Permission) []Permission {
	out := []Permission{}
	for _, p := range RolePermissions(role) {
		if tokenPerms == nil || slices.Contains(tokenPerms, p) {
			out = append(out, p)
		}
	}
	return out
}

// permissionsColumn is how admin_tokens.permissions stores ps: NULL for
// nil, else the names separated by spaces ("" for none).
func permissionsColumn(ps []Permission) *string {
	if ps == nil {
		return nil
	}
	s := joinPermissions(ps)
	return &s
}

// permissionsFrom undoes permissionsColumn. A name this build does not
// know (written by a newer one) is dropped: a token is never granted what
// its reader cannot name.
func permissionsFrom(col *string) []Permission {
	if col == nil {
		return nil
	}
	out := []Permission{}
	for _, f := range strings.Fields(*col) {
		if p := Permission(f); ValidPermission(p) {
			out = append(out, p)
		}
	}
	return out
}

// GetAdmin returns the admin called name, or ErrNotFound.
func (s *Store) GetAdmin(ctx context.Context, name string) (*Admin, error) {
	var a Admin
	if err := s.r.WithContext(ctx).Where("name = ?", name).Take(&a).Error; err != nil {
		return nil, translate(fmt.Sprintf("get admin %q", name), err)
	}
	return &a, nil
}

// SetAdminRole gives the admin called name role, and audits the change
// with the old and the new role, in one transaction; setting the role it
// has changes nothing and audits nothing. ErrNotFound if absent,
// ErrInvalid for an unknown role, and a *ConflictError when it would leave
// no owner (BootstrapAdmin does not count: it is not a person) or names
// BootstrapAdmin, whose role is fixed.
func (s *Store) SetAdminRole(ctx context.Context, name string, role Role, by Actor) (*Admin, error) {
	if err := checkRole(role); err != nil {
		return nil, err
	}
	if name == BootstrapAdmin {
		return nil, &ConflictError{Reason: "the bootstrap admin is always an owner while bootstrap_token is configured; its role cannot be changed"}
	}
	var out *Admin
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		a, err := s.lockOwnerChange(tx, name, role != RoleOwner, "demote")
		if err != nil {
			return err
		}
		out = a
		if a.Role == role {
			return nil
		}
		old := a.Role
		if err := tx.Model(&Admin{}).Where("id = ?", a.ID).Update("role", role).Error; err != nil {
			return err
		}
		a.Role = role
		return s.audit(tx, by, "admin.update", "admin", name, map[string]any{
			"role": map[string]any{"old": old, "new": role},
		})
	})
	if err != nil {
		return nil, translateAdmin(fmt.Sprintf("set role of admin %q", name), err)
	}
	return out, nil
}

// lockOwnerChange reads the admin called name for a change in tx that
// removes it from the owners when removes is true (a deletion, a
// demotion), and refuses the change with a *ConflictError if no other
// owner would be left. verb names the change in that error.
//
// It is race-free on PostgreSQL, at READ COMMITTED (lockingTx): it first
// locks every owner's row, in ID order so that two such changes never
// deadlock, and then the admin's. A concurrent change of another owner
// waits for this transaction, and then, re-reading the rows it waited for,
// no longer finds this admin among the owners. So of two demotions of the
// last two owners, the second sees one owner and is refused. An admin
// promoted after the owners were locked is not among them, and is counted
// from its own row, read after. On SQLite the single writer already runs
// these transactions one at a time.
func (s *Store) lockOwnerChange(tx *gorm.DB, name string, removes bool, verb string) (*Admin, error) {
	var owners []int64
	if err := tx.Model(&Admin{}).Clauses(forUpdate).
		Where("role = ? AND name <> ?", RoleOwner, BootstrapAdmin).
		Order("id").Pluck("id", &owners).Error; err != nil {
		return nil, err
	}
	var a Admin
	if err := tx.Clauses(forUpdate).Where("name = ?", name).Take(&a).Error; err != nil {
		return nil, err
	}
	if !removes || a.Role != RoleOwner || a.Name == BootstrapAdmin {
		return &a, nil
	}
	if others := slices.DeleteFunc(owners, func(id int64) bool { return id == a.ID }); len(others) == 0 {
		return nil, &ConflictError{Reason: fmt.Sprintf(
			"cannot %s %s: it is the last owner (the bootstrap admin does not count); make another admin an owner first", verb, name)}
	}
	return &a, nil
}

// translateAdmin is translate, keeping a *ConflictError's own words.
func translateAdmin(op string, err error) error {
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return fmt.Errorf("%s: %w", op, conflict)
	}
	return translate(op, err)
}

package storage

import "slices"

// Role is what an admin may do, at most; an admin token may narrow it with
// permissions of its own.
type Role string

const (
	// RoleOwner may do everything.
	RoleOwner Role = "owner"
	// RoleOperator runs integrations and their key pairs, reads the audit
	// log and keeps its own admin tokens; it neither manages admins nor
	// touches signing keys.
	RoleOperator Role = "operator"
	// RoleAuditor reads everything an owner can read, never a secret, and
	// changes nothing but its own admin tokens.
	RoleAuditor Role = "auditor"
)

// Roles lists every role, most powerful first.
var Roles = []Role{RoleOwner, RoleOperator, RoleAuditor}

// Permission names one kind of admin API call. Every admin route declares
// the one it needs (server/routes.go).
type Permission string

const (
	IntegrationsRead  Permission = "integrations:read"
	IntegrationsWrite Permission = "integrations:write"
	AdminsRead        Permission = "admins:read"
	AdminsWrite       Permission = "admins:write"
	AuditRead         Permission = "audit:read"
	SigningKeysRead   Permission = "signing-keys:read"
	SigningKeysWrite  Permission = "signing-keys:write"
	// AdminTokensRead and AdminTokensWrite are about the caller's own
	// admin tokens. A token without AdminTokensWrite cannot mint another,
	// so narrowing a token cannot be undone with it.
	AdminTokensRead  Permission = "admin-tokens:read"
	AdminTokensWrite Permission = "admin-tokens:write"
)

// Permissions is the one table of permissions: what each grants, and which
// roles hold it. The handlers, the CLI, the dashboard (through GET
// /admin/me) and the README's table all read it.
var Permissions = []struct {
	Permission Permission
	Grants     string
	Roles      []Role
}{
	{IntegrationsRead, "list and read integrations and their key pairs' public parts", []Role{RoleOwner, RoleOperator, RoleAuditor}},
	{IntegrationsWrite, "create, change, suspend, delete integrations; regenerate key pairs; revoke a found client secret or access token", []Role{RoleOwner, RoleOperator}},
	{AdminsRead, "list admins", []Role{RoleOwner, RoleAuditor}},
	{AdminsWrite, "create, change the role of and delete admins; revoke another admin's token found in the wild", []Role{RoleOwner}},
	{AuditRead, "read the audit log", []Role{RoleOwner, RoleOperator, RoleAuditor}},
	{SigningKeysRead, "list signing keys", []Role{RoleOwner, RoleAuditor}},
	{SigningKeysWrite, "rotate the signing key", []Role{RoleOwner}},
	{AdminTokensRead, "list one's own admin tokens", []Role{RoleOwner, RoleOperator, RoleAuditor}},
	{AdminTokensWrite, "mint and revoke one's own admin tokens (by ID, or by value when found in the wild)", []Role{RoleOwner, RoleOperator, RoleAuditor}},
}

// ValidRole reports whether r is a role.
func ValidRole(r Role) bool { return slices.Contains(Roles, r) }

// ValidPermission reports whether p is a permission.
func ValidPermission(p Permission) bool {
	for _, e := range Permissions {
		if e.Permission == p {
			return true
		}
	}
	return false
}

// RolePermissions lists what role r may do, in the table's order.
func RolePermissions(r Role) []Permission {
	var out []Permission
	for _, e := range Permissions {
		if slices.Contains(e.Roles, r) {
			out = append(out, e.Permission)
		}
	}
	return out
}

// AllPermissions lists every permission, in the table's order.
func AllPermissions() []Permission { return RolePermissions(RoleOwner) }

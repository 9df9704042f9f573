package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// signedIn is the permission of a route any valid admin token may call,
// whatever it was narrowed to: GET /admin/me.
const signedIn storage.Permission = ""

// caller is who sent an admin request, and what it may do.
type caller struct {
	admin *storage.Admin
	// token is the admin token the request came with; nil for the
	// bootstrap token.
	token *storage.AdminToken
	// perms are the request's effective permissions, in the table's order.
	perms []storage.Permission
}

func (c *caller) bootstrap() bool { return c.token == nil }

func (c *caller) may(p storage.Permission) bool { return p == signedIn || slices.Contains(c.perms, p) }

func tokenCaller(a *storage.Admin, t *storage.AdminToken) *caller {
	return &caller{admin: a, token: t, perms: storage.EffectivePermissions(a.Role, t.Permissions)}
}

// bootstrapCaller is the bootstrap token's caller: an owner, less
// AdminTokensWrite. It is a break-glass key that exists while it is
// configured: a token it minted would outlive its removal from config, so
// it mints none (and holds none to revoke). It can create an admin, who
// then mints tokens.
func bootstrapCaller(a *storage.Admin) *caller {
	owner := *a
	owner.Role = storage.RoleOwner
	perms := slices.DeleteFunc(storage.RolePermissions(storage.RoleOwner),
		func(p storage.Permission) bool { return p == storage.AdminTokensWrite })
	return &caller{admin: &owner, perms: perms}
}

func callerFrom(r *http.Request) *caller { return r.Context().Value(adminKey).(*caller) }

// forbid answers a request its caller may not make: 403
// insufficient_permissions, naming the permission it needs (in the
// description and as permission) and why the caller lacks it.
func forbid(w http.ResponseWriter, c *caller, need storage.Permission) {
	var why string
	switch {
	case c.bootstrap() && need == storage.AdminTokensWrite:
		why = "the bootstrap token cannot mint or revoke admin tokens for itself: it is a break-glass key, and nothing it does may outlive its removal from config; create an admin (POST /admin/admins) and use that admin's token"
	case !slices.Contains(storage.RolePermissions(c.admin.Role), need):
		why = fmt.Sprintf("the role %s does not grant it", c.admin.Role)
	default:
		why = "this admin token was narrowed without it (" + permissionList(c.perms) + ")"
	}
	writeJSON(w, http.StatusForbidden, errorBody{Error: "insufficient_permissions",
		Description: fmt.Sprintf("this call needs %s: %s", need, why), Permission: need})
}

func permissionList(ps []storage.Permission) string {
	if len(ps) == 0 {
		return "no permissions"
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = string(p)
	}
	return strings.Join(names, " ")
}

// wrongScheme is the 401 description for an Authorization header that is
// not a bearer token. It never repeats the header: a token sent without a
// scheme would be the "scheme".
const wrongScheme = "wrong authorization scheme: the admin API takes Authorization: Bearer <admin token>"

// handleMe answers who the caller is and what it may do. permissions (at
// the top, and the token's) are the effective ones: the role's, narrowed
// by the token.
func (s *Server) handleMe() http.Handler {
	type token struct {
		ID          string               `json:"id"`
		Description string               `json:"description"`
		Permissions []storage.Permission `json:"permissions"`
		CreatedAt   time.Time            `json:"created_at"`
		ExpiresAt   *time.Time           `json:"expires_at"`
		LastUsedAt  *time.Time           `json:"last_used_at"`
	}
	type response struct {
		Name        string               `json:"name"`
		Role        storage.Role         `json:"role"`
		Bootstrap   bool                 `json:"bootstrap"`
		Permissions []storage.Permission `json:"permissions"`
		Token       *token               `json:"token"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerFrom(r)
		out := response{Name: c.admin.Name, Role: c.admin.Role, Bootstrap: c.bootstrap(), Permissions: c.perms}
		if t := c.token; t != nil {
			out.Token = &token{ID: t.ID, Description: t.Description, Permissions: c.perms,
				CreatedAt: t.CreatedAt.UTC(), ExpiresAt: utc(t.ExpiresAt), LastUsedAt: utc(t.LastUsedAt)}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

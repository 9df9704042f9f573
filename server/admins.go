package server

import (
	"net/http"
	"time"

	"github.com/latchkey/latchkey/storage"
)

// The admin API's admins and admin tokens.

type adminTokenJSON struct {
	ID          string               `json:"id"`
	Token       string               `json:"token,omitempty"`
	Description string               `json:"description"`
	Permissions []storage.Permission `json:"permissions"`
	CreatedAt   time.Time            `json:"created_at"`
	ExpiresAt   *time.Time           `json:"expires_at"`
	LastUsedAt  *time.Time           `json:"last_used_at"`
}

// adminTokenOut shows t, held by an admin of role, with what it may do now:
// its permissions narrowed by the role, whose changes it follows.
func adminTokenOut(role storage.Role, t *storage.AdminToken) adminTokenJSON {
	return adminTokenJSON{ID: t.ID, Description: t.Description, Permissions: storage.EffectivePermissions(role, t.Permissions),
		CreatedAt: t.CreatedAt.UTC(), ExpiresAt: utc(t.ExpiresAt), LastUsedAt: utc(t.LastUsedAt)}
}

// handleAdminTokenCreate mints a token for the caller. Asked for no
// permissions, the token gets the calling token's: following the role if
// the calling token does, else narrowed as it is. It never gets a
// permission the calling token lacks, so narrowing cannot be undone.
func (s *Server) handleAdminTokenCreate() http.Handler {
	type request struct {
		Description   string                `json:"description"`
		ExpiresInDays *int                  `json:"expires_in_days"`
		Permissions   *[]storage.Permission `json:"permissions"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, true) {
			return
		}
		c := callerFrom(r)
		days := storage.DefaultAdminTokenDays
		if req.ExpiresInDays != nil {
			days = *req.ExpiresInDays
		}
		var perms []storage.Permission
		if c.token != nil {
			perms = c.token.Permissions
		}
		if req.Permissions != nil {
			var err error
			if perms, err = storage.NormalizePermissions(*req.Permissions); err != nil {
				s.adminError(w, r, err)
				return
			}
			for _, p := range perms {
				if !c.may(p) {
					writeJSON(w, http.StatusForbidden, errorBody{Error: "insufficient_permissions", Permission: p,
						Description: "minting a token with " + string(p) + " needs " + string(p) + ", which the calling token lacks (it has " +
							permissionList(c.perms) + "): a token is never wider than the one that minted it"})
					return
				}
			}
		}
		t, secret, err := s.store.CreateAdminToken(r.Context(), c.admin, req.Description, days, perms, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		out := adminTokenOut(c.admin.Role, t)
		out.Token = secret
		writeJSON(w, http.StatusCreated, out)
	})
}

// listedAdminTokenJSON is an admin token in the listing, which keeps
// expired tokens for storage.ExpiredAdminTokenRetention: Expired says so
// on the server's clock, so a script or the CLI need not compare clocks.
type listedAdminTokenJSON struct {
	adminTokenJSON
	Expired bool `json:"expired"`
}

func (s *Server) handleAdminTokenList() http.Handler {
	fetch := func(r *http.Request, p storage.Page) ([]*storage.AdminToken, string, error) {
		return s.store.ListAdminTokens(r.Context(), adminFrom(r).ID, p)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, now := adminFrom(r).Role, s.now()
		handleList(s, true, fetch, func(t *storage.AdminToken) listedAdminTokenJSON {
			return listedAdminTokenJSON{adminTokenOut(role, t), t.ExpiresAt != nil && !t.ExpiresAt.After(now)}
		}).ServeHTTP(w, r)
	})
}

func (s *Server) handleAdminTokenRevoke() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.RevokeAdminToken(r.Context(), adminFrom(r).ID, r.PathValue("id"), actor(r)); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

type adminJSON struct {
	Name      string       `json:"name"`
	Role      storage.Role `json:"role"`
	CreatedAt time.Time    `json:"created_at"`
	Token     string       `json:"token,omitempty"`
}

func adminOut(a *storage.Admin) adminJSON {
	return adminJSON{Name: a.Name, Role: a.Role, CreatedAt: a.CreatedAt.UTC()}
}

func (s *Server) handleAdminList() http.Handler {
	return handleList(s, true, func(r *http.Request, p storage.Page) ([]storage.Admin, string, error) {
		return s.store.ListAdmins(r.Context(), p)
	}, func(a storage.Admin) adminJSON { return adminOut(&a) })
}

// handleAdminCreate creates an admin, an operator unless the body names
// another role, with a first admin token that follows the role.
func (s *Server) handleAdminCreate() http.Handler {
	type request struct {
		Name string       `json:"name"`
		Role storage.Role `json:"role"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, false) {
			return
		}
		if req.Role == "" {
			req.Role = storage.RoleOperator
		}
		a, _, token, err := s.store.CreateAdmin(r.Context(), req.Name, req.Role, storage.DefaultAdminTokenDays, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		out := adminOut(a)
		out.Token = token
		writeJSON(w, http.StatusCreated, out)
	})
}

// handleAdminUpdate changes an admin's role; the last owner keeps its own
// (409).
func (s *Server) handleAdminUpdate() http.Handler {
	type request struct {
		Role *storage.Role `json:"role"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, false) {
			return
		}
		if req.Role == nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "role is required: the role is all there is to change")
			return
		}
		a, err := s.store.SetAdminRole(r.Context(), r.PathValue("name"), *req.Role, actor(r))
		if err != nil {
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, adminOut(a))
	})
}

func (s *Server) handleAdminDelete() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if s.bootstrap != nil && name == storage.BootstrapAdmin {
			writeError(w, http.StatusConflict, "conflict",
				"the bootstrap admin exists while bootstrap_token is configured; unset it to retire this admin")
			return
		}
		if err := s.store.DeleteAdmin(r.Context(), name, actor(r)); err != nil {
			s.adminError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

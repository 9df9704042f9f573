package server_test

import (
	"net/http"

	"github.com/latchkey/latchkey/storage"
)

// newAdmin creates an admin with role through the bootstrap token and
// returns its first admin token.
func (e *env) newAdmin(name string, role storage.Role) string {
	e.t.Helper()
	return e.mustAdmin("POST", "/admin/admins", map[string]any{"name": name, "role": role}, http.StatusCreated)["token"].(string)
}

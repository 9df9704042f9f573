package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/latchkey/latchkey/server/oauth/credential"
	"github.com/latchkey/latchkey/storage"
)

type credentialOwnerJSON struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

type revokedCredentialJSON struct {
	Kind    string              `json:"kind"`
	Owner   credentialOwnerJSON `json:"owner"`
	Revoked bool                `json:"revoked"`
}

// missingPermission is how handleCredentialRevoke's check of a found admin
// token's owner says no.
type missingPermission struct{ need storage.Permission }

func (m *missingPermission) Error() string {
	return "revoking this admin token needs " + string(m.need)
}

// handleCredentialRevoke serves POST /admin/credentials/revoke
// {"credential": VALUE}: an admin who found a latchkey credential in the
// wild (a log, a repository, a ticket) revokes it by its value, without
// knowing whose it is, and learns whose it was:
// 200 {"kind", "owner": {"type", "name"}, "revoked"}.
//
//   - A client secret (lk_cs_…) ends its key pair at once, as a
//     regeneration without grace would, and with it every token the pair
//     was issued. When it was the current pair, the integration has none
//     (key_pair: null) until it is regenerated; a pair in its grace period
//     leaves the current one alone.
//   - An admin token (lk_adm_…) is deleted.
//   - An access token, opaque (lk_at_…) or JWT, is deleted: introspection
//     says inactive at once; a resource server that verifies JWTs offline
//     accepts one until it expires, as with every revocation.
//
// "revoked" is false when the credential was found but had already
// stopped working (expired, or revoked before), until the janitor deletes
// it; the call is audited either way. A value that is no credential this
// server still stores is 404 not_found: unknown, from another server, a
// deleted integration's, ended and purged, or not shaped like a
// credential at all. A latchkey-shaped value whose checksum fails is
// 404 too, with a description that says it was mistyped or truncated:
// the real credential may still be out there. The bootstrap token is
// configuration, not revocable here: 409.
//
// The route needs storage.IntegrationsWrite. Revoking another admin's
// token needs storage.AdminsWrite as well, and one's own
// storage.AdminTokensWrite, checked once the token is found: a caller
// without it is refused (403 insufficient_permissions naming it) and the
// token is left as it was.
//
// The audit event is credential.revoke about the owner, with the kind,
// the key pair's client ID, the admin token's ID or the token's jti:
// never the credential or anything derived from it.
func (s *Server) handleCredentialRevoke() http.Handler {
	type request struct {
		Credential string `json:"credential"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req request
		if !decode(w, r, &req, false) {
			return
		}
		v := strings.TrimSpace(req.Credential)
		var (
			c   *storage.RevokedCredential
			err error
		)
		switch {
		case v == "":
			writeError(w, http.StatusBadRequest, "invalid_request",
				"credential is required: the value of a client secret, an admin token or an access token")
			return
		case s.isBootstrap(v):
			writeError(w, http.StatusConflict, "conflict",
				"this is the bootstrap token, which is configuration: remove bootstrap_token from every replica's configuration to revoke it")
			return
		case strings.HasPrefix(v, credential.ClientSecretPrefix):
			if !credential.ValidChecksummed(v, credential.ClientSecretPrefix) {
				writeMistyped(w, "a client secret")
				return
			}
			c, err = s.store.RevokeClientSecret(r.Context(), v, actor(r))
		case strings.HasPrefix(v, credential.AdminTokenPrefix):
			if !credential.ValidChecksummed(v, credential.AdminTokenPrefix) {
				writeMistyped(w, "an admin token")
				return
			}
			// Another admin's token is managing admins; one's own is
			// managing one's own tokens.
			c, err = s.store.RevokeAdminTokenValue(r.Context(), v, actor(r), func(owner *storage.Admin) error {
				need, caller := storage.AdminsWrite, callerFrom(r)
				if owner.ID == caller.admin.ID {
					need = storage.AdminTokensWrite
				}
				if !caller.may(need) {
					return &missingPermission{need}
				}
				return nil
			})
		case strings.HasPrefix(v, credential.ClientIDPrefix):
			writeError(w, http.StatusNotFound, "not_found",
				"a client ID is not a secret and revokes nothing; to end its key pair, regenerate the integration's key pair")
			return
		default:
			c, err = s.revokeAccessToken(r, v)
		}
		var missing *missingPermission
		switch {
		case errors.As(err, &missing):
			forbid(w, callerFrom(r), missing.need)
			return
		case errors.Is(err, storage.ErrNotFound):
			writeError(w, http.StatusNotFound, "not_found",
				"no credential of this server has this value: it is unknown, belonged to a deleted integration, or expired long ago")
			return
		case err != nil:
			s.adminError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, revokedCredentialJSON{Kind: c.Kind, Owner: credentialOwnerJSON{Type: c.OwnerType, Name: c.Owner},
			Revoked: c.Revoked})
	})
}

// writeMistyped answers a value with a credential's prefix whose checksum
// fails: nothing could match it, and the credential it was copied from
// may still work.
func writeMistyped(w http.ResponseWriter, kind string) {
	writeError(w, http.StatusNotFound, "not_found", "this looks like "+kind+
		" but its checksum does not match: it was mistyped or truncated; revoke the credential whole, as it was found")
}

// revokeAccessToken revokes the access token v, opaque or JWT, if this
// server issued it and still stores it; anything else is ErrNotFound.
func (s *Server) revokeAccessToken(r *http.Request, v string) (*storage.RevokedCredential, error) {
	sig, ok := s.oauth.TokenSignature(r.Context(), v)
	if !ok {
		return nil, storage.ErrNotFound
	}
	t, err := s.store.GetToken(r.Context(), sig)
	if err != nil {
		return nil, err
	}
	return s.store.RevokeAccessToken(r.Context(), t, s.oauth.Revocable(t), actor(r))
}

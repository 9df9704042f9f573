package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

type integrationRow struct {
	ID                   int64 `gorm:"primaryKey"`
	Name                 string
	Description          string
	Scopes               string
	Audience             string
	CanIntrospect        bool
	TokenLifetimeSeconds *int64
	TokenRatePerMinute   *int64
	Disabled             bool
	// The keyless and DPoP columns (migration 0011). Jwks and JwksURI are
	// NULL when unset, so the previous release's inserts and this one's
	// agree.
	TokenEndpointAuthMethod string
	Jwks                    *string
	JwksURI                 *string `gorm:"column:jwks_uri"`
	RequireDpop             bool    `gorm:"column:require_dpop"`
	IntrospectionAudience   string
	CreatedBy               string
	CreatedAt               time.Time
	UpdatedAt               time.Time
}

func (integrationRow) TableName() string { return "integrations" }

// live is the condition every read of integrations adds: a deleted
// integration waits for the janitor under a name no one can ask for, but
// is filtered by its mark as well, not only by its name.
const live = "deleted_at IS NULL"

// forUpdate makes a read in a transaction wait for, and hold off, every
// other writer of the rows it read. gorm's SQLite driver leaves it out:
// there the single writer already queues every write.
var forUpdate = clause.Locking{Strength: clause.LockingStrengthUpdate}

// deletedName is the name a deleted integration's row takes until the
// janitor removes it: it starts with "~", which no valid name does, and
// holds the row's ID, which no other row has.
func deletedName(id int64, name string) string {
	return "~deleted~" + strconv.FormatInt(id, 10) + "~" + name
}

func (r *integrationRow) integration() *Integration {
	return &Integration{
		ID: r.ID, Name: r.Name, Description: r.Description,
		Scopes: splitList(r.Scopes), Audience: splitList(r.Audience),
		CanIntrospect: r.CanIntrospect, TokenLifetimeSeconds: r.TokenLifetimeSeconds,
		TokenRatePerMinute: r.TokenRatePerMinute, Disabled: r.Disabled,
		TokenEndpointAuthMethod: r.TokenEndpointAuthMethod, JWKS: stringOf(r.Jwks), JWKSURI: stringOf(r.JwksURI),
		RequireDPoP: r.RequireDpop, IntrospectionAudience: splitList(r.IntrospectionAudience),
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

func stringOf(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// orNil is s, or nil for "", as the nullable columns store it.
func orNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (KeyPair) TableName() string { return "key_pairs" }

// CreateIntegration stores a new integration with its first key pair and
// audits it, in one transaction. It returns ErrInvalid for a bad field and
// ErrConflict when the name is taken. The returned NewKeyPair holds the
// only copy of the secret.
func (s *Store) CreateIntegration(ctx context.Context, in IntegrationInput, by Actor) (*Integration, *NewKeyPair, error) {
	if err := checkName(in.Name); err != nil {
		return nil, nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, nil, err
	}
	scopes, err := normalizeScopes(in.Scopes)
	if err != nil {
		return nil, nil, err
	}
	aud, err := normalizeAudience(in.Audience)
	if err != nil {
		return nil, nil, err
	}
	if err := checkLifetime(in.TokenLifetimeSeconds); err != nil {
		return nil, nil, err
	}
	if err := checkRate(in.TokenRatePerMinute); err != nil {
		return nil, nil, err
	}
	introAud, err := normalizeIntrospectionAudience(in.IntrospectionAudience)
	if err != nil {
		return nil, nil, err
	}
	ks := keySource{method: in.TokenEndpointAuthMethod, uri: orNil(in.JWKSURI)}
	if ks.method == "" {
		ks.method = AuthMethods[0]
	}
	if ks.jwks, err = normalizeJWKS(in.JWKS); err != nil {
		return nil, nil, err
	}
	if ks.uri != nil {
		if err := checkJWKSURI(*ks.uri); err != nil {
			return nil, nil, err
		}
	}
	if err := checkKeySource(ks); err != nil {
		return nil, nil, err
	}
	now := s.clock()
	row := integrationRow{
		Name: in.Name, Description: in.Description, Scopes: joinList(scopes), Audience: joinList(aud),
		CanIntrospect: in.CanIntrospect, TokenLifetimeSeconds: in.TokenLifetimeSeconds,
		TokenRatePerMinute: in.TokenRatePerMinute, TokenEndpointAuthMethod: ks.method,
		Jwks: ks.jwks, JwksURI: ks.uri, RequireDpop: in.RequireDPoP,
		IntrospectionAudience: joinList(introAud), CreatedBy: by.Name,
		CreatedAt: now, UpdatedAt: now,
	}
	details := map[string]any{"scopes": scopes, "audience": aud, "can_introspect": in.CanIntrospect}
	// Only what differs from a plain secret integration, so the log of
	// one stays as it was.
	if ks.method != AuthMethods[0] {
		details["token_endpoint_auth_method"] = ks.method
	}
	if ks.jwks != nil {
		details["jwks"] = jwksSummary(ks.jwks)
	}
	if ks.uri != nil {
		details["jwks_uri"] = *ks.uri
	}
	if in.RequireDPoP {
		details["require_dpop"] = true
	}
	if len(introAud) > 0 {
		details["introspection_audience"] = introAud
	}
	if in.TokenRatePerMinute != nil {
		// An uncapped integration is a decision worth finding in the log.
		details["token_rate_per_minute"] = *in.TokenRatePerMinute
	}
	var kp *KeyPair
	var nk *NewKeyPair
	err = s.tx(ctx, func(tx *gorm.DB) error {
		row.ID = 0 // a retried transaction must not reuse the ID of the attempt rolled back
		if err := tx.Create(&row).Error; err != nil {
			return err
		}
		kp, nk, err = s.insertKeyPair(tx, row.ID, ks.method == AuthPrivateKeyJWT, now)
		if err != nil {
			return err
		}
		details["client_id"] = kp.ClientID
		return s.audit(tx, by, "integration.create", "integration", row.Name, details)
	})
	if err != nil {
		return nil, nil, translate(fmt.Sprintf("create integration %q", in.Name), err)
	}
	ig := row.integration()
	ig.KeyPair = kp
	return ig, nk, nil
}

// insertKeyPair makes a new pair: a client ID and a secret, or, keyless
// (private_key_jwt), a client ID whose secret hash is empty, which no
// secret matches.
func (s *Store) insertKeyPair(tx *gorm.DB, integrationID int64, keyless bool, now time.Time) (*KeyPair, *NewKeyPair, error) {
	secret, hash := "", []byte{}
	if !keyless {
		secret = s.creds.NewClientSecret()
		hash = s.creds.HashSecret(secret)
	}
	kp := &KeyPair{IntegrationID: integrationID, ClientID: s.creds.NewClientID(), SecretHash: hash, CreatedAt: now}
	if err := tx.Create(kp).Error; err != nil {
		return nil, nil, err
	}
	return kp, &NewKeyPair{ClientID: kp.ClientID, ClientSecret: secret, CreatedAt: now}, nil
}

// GetIntegration returns the integration called name with its current key
// pair and, during a grace period, its previous one; ErrNotFound if absent.
func (s *Store) GetIntegration(ctx context.Context, name string) (*Integration, error) {
	var row integrationRow
	if err := s.r.WithContext(ctx).Where("name = ?", name).Where(live).Take(&row).Error; err != nil {
		return nil, translate(fmt.Sprintf("get integration %q", name), err)
	}
	ig := row.integration()
	if err := s.attachKeyPairs(ctx, []*Integration{ig}); err != nil {
		return nil, err
	}
	return ig, nil
}

// attachKeyPairs fills KeyPair and PreviousKeyPair of igs from the pairs
// that still work.
func (s *Store) attachKeyPairs(ctx context.Context, igs []*Integration) error {
	if len(igs) == 0 {
		return nil
	}
	byID := make(map[int64]*Integration, len(igs))
	ids := make([]int64, 0, len(igs))
	for _, ig := range igs {
		byID[ig.ID] = ig
		ids = append(ids, ig.ID)
	}
	var pairs []KeyPair
	err := s.r.WithContext(ctx).
		Where("integration_id IN ? AND (expires_at IS NULL OR expires_at > ?)", ids, s.clock()).
		Order("id").Find(&pairs).Error
	if err != nil {
		return unavailable("load key pairs", err)
	}
	for i := range pairs {
		kp := &pairs[i]
		ig := byID[kp.IntegrationID]
		if kp.ExpiresAt == nil {
			ig.KeyPair = kp
		} else {
			ig.PreviousKeyPair = kp
		}
	}
	return nil
}

// ListIntegrations returns integrations ordered by name, with their key
// pairs (never secrets), and the token of the next page ("" at the end).
func (s *Store) ListIntegrations(ctx context.Context, p Page) ([]*Integration, string, error) {
	igs, next, _, err := s.FindIntegrations(ctx, IntegrationQuery{}, p)
	return igs, next, err
}

// IntegrationQuery picks and orders the integrations a listing shows.
type IntegrationQuery struct {
	// Search, when set, keeps the integrations whose name, description or
	// scopes contain it, in any case, and the one whose current or
	// previous key pair has it as client ID: what an admin pastes from a
	// log or remembers of a name.
	Search string
	// Sort is one of IntegrationSorts; "" is "name".
	Sort string
}

// IntegrationSorts are the orders an integration listing may take: by
// name, or by creation, oldest first; a leading "-" reverses either.
var IntegrationSorts = []string{"name", "-name", "created_at", "-created_at"}

// FindIntegrations is ListIntegrations narrowed and ordered by q, with the
// number of integrations q matches in all. A page token names the order it
// was made for: used with another, it is ErrInvalid.
func (s *Store) FindIntegrations(ctx context.Context, q IntegrationQuery, p Page) ([]*Integration, string, int64, error) {
	sort := q.Sort
	if sort == "" {
		sort = "name"
	}
	if !slices.Contains(IntegrationSorts, sort) {
		return nil, "", 0, invalidf("sort must be one of %s", strings.Join(IntegrationSorts, ", "))
	}
	match := s.r.WithContext(ctx).Model(&integrationRow{}).Where(live)
	if q.Search != "" {
		like := "%" + likeEscaper.Replace(strings.ToLower(q.Search)) + "%"
		match = match.Where(`(LOWER(name) LIKE ? ESCAPE '\' OR LOWER(description) LIKE ? ESCAPE '\'
			OR LOWER(scopes) LIKE ? ESCAPE '\' OR id IN (SELECT integration_id FROM key_pairs WHERE client_id = ?))`,
			like, like, like, q.Search)
	}
	var total int64
	if err := match.Session(&gorm.Session{}).Count(&total).Error; err != nil {
		return nil, "", 0, unavailable("list integrations", err)
	}
	column, desc := strings.CutPrefix(sort, "-")
	by := pageOrder{column: column, desc: desc, thenID: column == "created_at", sort: sort}
	rows, next, err := findPage(match.Session(&gorm.Session{}), p, by, "list integrations", func(r *integrationRow) string {
		if by.thenID {
			return timeCursor(r.CreatedAt, r.ID)
		}
		return r.Name
	})
	if err != nil {
		return nil, "", 0, err
	}
	igs := make([]*Integration, len(rows))
	for i := range rows {
		igs[i] = rows[i].integration()
	}
	if err := s.attachKeyPairs(ctx, igs); err != nil {
		return nil, "", 0, err
	}
	return igs, next, total, nil
}

// likeEscaper makes a search text match itself only, in a LIKE pattern
// with ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// UpdateIntegration applies patch to the integration called name and audits
// the change, atomically. Tokens already issued keep what they were granted.
// Disabling it changes no key pair or token: every lookup after the commit,
// on any replica, reports the integration disabled, and enabling it again
// reports its pairs and tokens as they were. The audit event's details hold
// the old and the new value of each field that changed (see changes); a
// patch that changes nothing, empty or not, writes nothing, audits nothing
// and leaves updated_at as it was. It returns ErrNotFound or ErrInvalid.
func (s *Store) UpdateIntegration(ctx context.Context, name string, patch IntegrationPatch, by Actor) (*Integration, error) {
	if patch.ResetTokenLifetime && patch.TokenLifetimeSeconds != nil {
		return nil, invalidf("token_lifetime_seconds cannot be both set and reset")
	}
	if patch.ResetTokenRate && patch.TokenRatePerMinute != nil {
		return nil, invalidf("token_rate_per_minute cannot be both set and reset")
	}
	if patch.Description != nil {
		if err := checkDescription(*patch.Description); err != nil {
			return nil, err
		}
	}
	var scopes, aud []string
	if patch.Scopes != nil {
		var err error
		if scopes, err = normalizeScopes(*patch.Scopes); err != nil {
			return nil, err
		}
	}
	if patch.Audience != nil {
		var err error
		if aud, err = normalizeAudience(*patch.Audience); err != nil {
			return nil, err
		}
	}
	if err := checkLifetime(patch.TokenLifetimeSeconds); err != nil {
		return nil, err
	}
	if err := checkRate(patch.TokenRatePerMinute); err != nil {
		return nil, err
	}
	var introAud []string
	if patch.IntrospectionAudience != nil {
		var err error
		if introAud, err = normalizeIntrospectionAudience(*patch.IntrospectionAudience); err != nil {
			return nil, err
		}
	}
	newJWKS, err := normalizeJWKS(patch.JWKS)
	if err != nil {
		return nil, err
	}
	if patch.JWKSURI != nil && *patch.JWKSURI != "" {
		if err := checkJWKSURI(*patch.JWKSURI); err != nil {
			return nil, err
		}
	}
	if patch.empty() {
		return s.GetIntegration(ctx, name)
	}
	err = s.tx(ctx, func(tx *gorm.DB) error {
		var row integrationRow
		if err := tx.Clauses(forUpdate).Where("name = ?", name).Where(live).Take(&row).Error; err != nil {
			return err
		}
		old := row.integration()
		ks := keySource{method: row.TokenEndpointAuthMethod, jwks: row.Jwks, uri: row.JwksURI}
		if patch.TokenEndpointAuthMethod != nil {
			ks.method = *patch.TokenEndpointAuthMethod
		}
		if patch.JWKS != nil {
			ks.jwks = newJWKS
		}
		if patch.JWKSURI != nil {
			ks.uri = orNil(*patch.JWKSURI)
		}
		if err := checkKeySource(ks); err != nil {
			return err
		}
		updates := map[string]any{}
		c := changes{}
		if patch.Description != nil && c.note("description", old.Description, *patch.Description) {
			updates["description"] = *patch.Description
		}
		if patch.Scopes != nil && c.note("scopes", old.Scopes, scopes) {
			updates["scopes"] = joinList(scopes)
		}
		if patch.Audience != nil && c.note("audience", old.Audience, aud) {
			updates["audience"] = joinList(aud)
		}
		if patch.CanIntrospect != nil && c.note("can_introspect", old.CanIntrospect, *patch.CanIntrospect) {
			updates["can_introspect"] = *patch.CanIntrospect
		}
		// nil is the server's default, in the details as in the API.
		if patch.ResetTokenLifetime || patch.TokenLifetimeSeconds != nil {
			if c.note("token_lifetime_seconds", old.TokenLifetimeSeconds, patch.TokenLifetimeSeconds) {
				updates["token_lifetime_seconds"] = patch.TokenLifetimeSeconds
			}
		}
		if patch.ResetTokenRate || patch.TokenRatePerMinute != nil {
			if c.note("token_rate_per_minute", old.TokenRatePerMinute, patch.TokenRatePerMinute) {
				updates["token_rate_per_minute"] = patch.TokenRatePerMinute
			}
		}
		// A suspension or its end is what an auditor looks for.
		if patch.Disabled != nil && c.note("disabled", old.Disabled, *patch.Disabled) {
			updates["disabled"] = *patch.Disabled
		}
		if c.note("token_endpoint_auth_method", old.TokenEndpointAuthMethod, ks.method) {
			updates["token_endpoint_auth_method"] = ks.method
			if ks.method == AuthPrivateKeyJWT {
				// The secrets go for good: switching back needs a
				// regeneration, so one that leaked before the switch
				// never works again.
				if err := tx.Model(&KeyPair{}).Where("integration_id = ?", row.ID).
					Update("secret_hash", []byte{}).Error; err != nil {
					return err
				}
			}
		}
		// Keys are named by kid and thumbprint: which key came or went is
		// what an auditor asks, and the set itself is not worth copying.
		if patch.JWKS != nil && stringOf(ks.jwks) != old.JWKS {
			updates["jwks"] = ks.jwks
			c["jwks"] = map[string]any{"old": jwksSummary(row.Jwks), "new": jwksSummary(ks.jwks)}
		}
		if patch.JWKSURI != nil && c.note("jwks_uri", old.JWKSURI, stringOf(ks.uri)) {
			updates["jwks_uri"] = ks.uri
		}
		if patch.RequireDPoP != nil && c.note("require_dpop", old.RequireDPoP, *patch.RequireDPoP) {
			updates["require_dpop"] = *patch.RequireDPoP
		}
		if patch.IntrospectionAudience != nil && c.note("introspection_audience", old.IntrospectionAudience, introAud) {
			updates["introspection_audience"] = joinList(introAud)
		}
		if len(c) == 0 {
			return nil
		}
		updates["updated_at"] = s.clock()
		if err := tx.Model(&integrationRow{}).Where("id = ?", row.ID).Updates(updates).Error; err != nil {
			return err
		}
		return s.audit(tx, by, "integration.update", "integration", name, c.details())
	})
	if err != nil {
		return nil, translate(fmt.Sprintf("update integration %q", name), err)
	}
	return s.GetIntegration(ctx, name)
}

// DeleteIntegration deletes the integration called name and audits it, in
// one transaction. When it returns, on every replica, the name is free, the
// integration is in no listing, its key pairs are refused and every token
// it was issued is inactive. Its rows stay behind for Purge, which deletes
// the tokens in batches, then the key pairs, then the integration: the
// transaction here touches the integration and its few key pairs, however
// many tokens it holds, so it never stalls other requests. ErrNotFound if
// absent.
func (s *Store) DeleteIntegration(ctx context.Context, name string, by Actor) error {
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		// Locked as RegenerateKeyPair locks them, so a deletion and a
		// regeneration of one integration queue one behind the other, and
		// token requests in flight for its pairs either stored their token
		// before (which then dies with the pair) or see the pair ended.
		var ids []int64
		if err := tx.Model(&integrationRow{}).Clauses(forUpdate).Where("name = ?", name).Where(live).Pluck("id", &ids).Error; err != nil {
			return err
		}
		if len(ids) == 0 {
			return ErrNotFound
		}
		id := ids[0]
		var pairs []int64
		if err := tx.Model(&KeyPair{}).Clauses(forUpdate).Where("integration_id = ?", id).Pluck("id", &pairs).Error; err != nil {
			return err
		}
		now := s.clock()
		if err := tx.Model(&KeyPair{}).
			Where("integration_id = ? AND (expires_at IS NULL OR expires_at > ?)", id, now).
			Update("expires_at", now).Error; err != nil {
			return err
		}
		if err := tx.Model(&integrationRow{}).Where("id = ?", id).
			Updates(map[string]any{"name": deletedName(id, name), "deleted_at": now, "updated_at": now}).Error; err != nil {
			return err
		}
		return s.audit(tx, by, "integration.delete", "integration", name, nil)
	})
	return translate(fmt.Sprintf("delete integration %q", name), err)
}

// RegenerateKeyPair gives the integration called name a new current key
// pair, in one transaction with its audit event. The old current pair keeps
// working until now+grace (grace 0: it is revoked at once, and so is every
// token issued to it). A pair that was still in an earlier grace period is
// revoked at once, so at most two pairs ever work. Returns ErrNotFound or
// ErrInvalid (grace outside 0..MaxGrace).
func (s *Store) RegenerateKeyPair(ctx context.Context, name string, grace time.Duration, by Actor) (*NewKeyPair, error) {
	if grace < 0 || grace > MaxGrace {
		return nil, invalidf("grace_seconds must be between 0 and %d", int64(MaxGrace/time.Second))
	}
	var nk *NewKeyPair
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		// The integration's row lock queues regenerations of one
		// integration, from any replica, one behind the other; each then
		// reads the pairs as the previous one left them.
		var rows []integrationRow
		if err := tx.Clauses(forUpdate).Select("id", "token_endpoint_auth_method").
			Where("name = ?", name).Where(live).Find(&rows).Error; err != nil {
			return err
		}
		if len(rows) == 0 {
			return ErrNotFound
		}
		row := rows[0]
		// Lock the pairs, then read the clock, so the deadline counts from
		// the moment no token request can slip past: one that stored its
		// token before the lock was ours was issued before now, and one
		// after waits for this change and then sees it. On SQLite the
		// writer, already ours, is all these locks.
		var pairs []KeyPair
		if err := tx.Clauses(forUpdate).Select("id", "client_id", "expires_at").
			Where("integration_id = ?", row.ID).Find(&pairs).Error; err != nil {
			return err
		}
		now := s.clock()
		deadline := now.Add(grace)
		var old *KeyPair
		for i := range pairs {
			if pairs[i].ExpiresAt == nil {
				old = &pairs[i]
			}
		}
		if err := tx.Model(&KeyPair{}).
			Where("integration_id = ? AND expires_at > ?", row.ID, now).
			Update("expires_at", now).Error; err != nil {
			return err
		}
		if err := tx.Model(&KeyPair{}).
			Where("integration_id = ? AND expires_at IS NULL", row.ID).
			Update("expires_at", deadline).Error; err != nil {
			return err
		}
		var kp *KeyPair
		var err error
		kp, nk, err = s.insertKeyPair(tx, row.ID, row.TokenEndpointAuthMethod == AuthPrivateKeyJWT, now)
		if err != nil {
			return err
		}
		details := map[string]any{"client_id": kp.ClientID, "grace_seconds": int64(grace / time.Second)}
		if old != nil {
			if grace > 0 {
				nk.PreviousExpiresAt = &deadline
			}
			details["previous_client_id"] = old.ClientID
			details["previous_expires_at"] = deadline
		}
		return s.audit(tx, by, "key_pair.regenerate", "integration", name, details)
	})
	if err != nil {
		return nil, translate(fmt.Sprintf("regenerate key pair of %q", name), err)
	}
	return nk, nil
}

// EndGrace revokes at once the previous key pair of the integration called
// name, which a regeneration with grace left working, and with it every
// token issued to it, in one transaction with its audit event. The current
// pair is untouched. Returns ErrNotFound when there is no such integration
// or no pair in its grace period.
func (s *Store) EndGrace(ctx context.Context, name string, by Actor) error {
	err := s.lockingTx(ctx, func(tx *gorm.DB) error {
		var ids []int64
		if err := tx.Model(&integrationRow{}).Clauses(forUpdate).Where("name = ?", name).Where(live).Pluck("id", &ids).Error; err != nil {
			return err
		}
		if len(ids) == 0 {
			return ErrNotFound
		}
		var pairs []KeyPair
		if err := tx.Clauses(forUpdate).Select("id", "client_id", "expires_at").
			Where("integration_id = ?", ids[0]).Find(&pairs).Error; err != nil {
			return err
		}
		now := s.clock()
		var inGrace *KeyPair
		for i := range pairs {
			if pairs[i].ExpiresAt != nil && pairs[i].ExpiresAt.After(now) {
				inGrace = &pairs[i]
			}
		}
		if inGrace == nil {
			return ErrNotFound
		}
		if err := tx.Model(&KeyPair{}).Where("id = ?", inGrace.ID).Update("expires_at", now).Error; err != nil {
			return err
		}
		return s.audit(tx, by, "key_pair.end_grace", "integration", name, map[string]any{
			"previous_client_id": inGrace.ClientID, "previous_expires_at": map[string]any{"old": inGrace.ExpiresAt.UTC(), "new": now.UTC()},
		})
	})
	return translate(fmt.Sprintf("end the grace of %q", name), err)
}

// translate maps gorm and driver errors to this package's sentinels and
// adds context; sentinels and nil pass through.
func translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fmt.Errorf("%s: %w", op, ErrConflict)
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrUnavailable):
		return fmt.Errorf("%s: %w", op, err)
	}
	return unavailable(op, err)
}

// unavailable marks err, which came from the database, as ErrUnavailable:
// the caller answers 503 and may try again, rather than reporting a fault
// in the request.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// Scopes returns every scope some integration may be granted, sorted, for
// the authorization server metadata.
func (s *Store) Scopes(ctx context.Context) ([]string, error) {
	var lists []string
	if err := s.r.WithContext(ctx).Model(&integrationRow{}).Where(live).Distinct("scopes").Pluck("scopes", &lists).Error; err != nil {
		return nil, unavailable("list scopes", err)
	}
	seen := map[string]bool{}
	out := []string{}
	for _, l := range lists {
		for _, sc := range splitList(l) {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

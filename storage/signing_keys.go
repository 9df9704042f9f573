package storage

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"gorm.io/gorm"
)

// Signing algorithms latchkey generates keys for.
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	RS256 = "RS256"
)

// SigningAlgorithms lists every signing algorithm, the default (ES256)
// first: the one list that configuration accepts, keys are generated for
// and JWT access tokens are verified with. Callers must not change it.
var SigningAlgorithms = []string{ES256, EdDSA, RS256}

// SigningKey is a key pair that signs JWT access tokens. Exactly one key is
// active; retired keys stay published in the JWKS while a token they signed
// is still live, then the janitor deletes them.
type SigningKey struct {
	ID        string // the kid: the RFC 7638 thumbprint of the public key
	Algorithm string
	Public    jose.JSONWebKey
	// Private is set only by ActiveSigningKey; listings never decrypt.
	Private   crypto.Signer
	Active    bool
	CreatedAt time.Time
	RetiredAt *time.Time
	// PublishedUntil is, for a retired key, when it leaves the JWKS: when
	// its last live token expires, or signingKeyGrace after its retirement,
	// whichever is later; nil for the active key and for a key no longer
	// published.
	PublishedUntil *time.Time
}

type signingKeyRow struct {
	Kid        string `gorm:"primaryKey"`
	Algorithm  string
	PublicJWK  string `gorm:"column:public_jwk"`
	PrivateKey []byte
	Active     bool
	CreatedAt  time.Time
	RetiredAt  *time.Time
}

func (signingKeyRow) TableName() string { return "signing_keys" }

// newSigningKey generates a key for alg and seals its private part; rotate
// stamps its creation time.
func (s *Store) newSigningKey(alg string) (*signingKeyRow, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, invalidf("signing algorithm %q is not one of %s", alg, strings.Join(SigningAlgorithms, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: alg, Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint %s key: %w", alg, err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	pubJSON, err := pub.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode %s public key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode %s private key: %w", alg, err)
	}
	sealed, err := seal(s.sealingKeys[0], der, []byte(pub.KeyID))
	if err != nil {
		return nil, err
	}
	return &signingKeyRow{Kid: pub.KeyID, Algorithm: alg, PublicJWK: string(pubJSON), PrivateKey: sealed,
		Active: true}, nil
}

func seal(key, plaintext, aad []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	_, _ = rand.Read(nonce) // never fails since Go 1.24
	return gcm.Seal(nonce, nonce, plaintext, aad), nil
}

var errUnseal = errors.New("cannot decrypt the signing key with any configured secret")

// unseal decrypts with each configured secret's key in turn, so keys
// sealed under a previous secret still open during a secret rotation. It
// reports which key opened it (0 is the current secret).
func (s *Store) unseal(sealed, aad []byte) ([]byte, int, error) {
	for i, key := range s.sealingKeys {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, 0, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, 0, err
		}
		if len(sealed) < gcm.NonceSize() {
			return nil, 0, errUnseal
		}
		if pt, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], aad); err == nil {
			return pt, i, nil
		}
	}
	return nil, 0, errUnseal
}

func (r *signingKeyRow) key() (*SigningKey, error) {
	k := &SigningKey{ID: r.Kid, Algorithm: r.Algorithm, Active: r.Active, CreatedAt: r.CreatedAt, RetiredAt: r.RetiredAt}
	if err := json.Unmarshal([]byte(r.PublicJWK), &k.Public); err != nil {
		return nil, fmt.Errorf("signing key %s: public key: %w", r.Kid, err)
	}
	return k, nil
}

// EnsureSigningKey makes sure an active key for alg exists, and returns it
// with its private part. With no key it creates one; when the active key
// uses another algorithm (the operator changed signing_algorithm) it
// rotates to a new key for alg. Keys sealed under a previous system secret
// are re-sealed under the current one, so the old secret can be retired.
// Replicas starting together agree: the decision is checked again inside
// the transaction that acts on it.
func (s *Store) EnsureSigningKey(ctx context.Context, alg string) (*SigningKey, error) {
	var rows []signingKeyRow
	if err := s.r.WithContext(ctx).Find(&rows).Error; err != nil {
		return nil, unavailable("ensure signing key", err)
	}
	reseal, err := s.needReseal(rows)
	if err != nil {
		return nil, fmt.Errorf("ensure signing key: %w", err)
	}
	var fresh *signingKeyRow
	if !hasActive(rows, alg) {
		// Key generation (RSA takes up to a second) happens before the
		// transaction, never while holding the only writer.
		if fresh, err = s.newSigningKey(alg); err != nil {
			return nil, fmt.Errorf("ensure signing key: %w", err)
		}
	}
	if fresh != nil || len(reseal) > 0 {
		err := s.tx(ctx, func(tx *gorm.DB) error {
			for kid, sealed := range reseal {
				if err := tx.Model(&signingKeyRow{}).Where("kid = ?", kid).Update("private_key", sealed).Error; err != nil {
					return err
				}
			}
			var current []signingKeyRow
			if err := tx.Where("active").Find(&current).Error; err != nil {
				return err
			}
			if fresh == nil || hasActive(current, alg) {
				return nil
			}
			return s.rotate(tx, fresh, Actor{Type: "system", Name: "latchkey"}, "signing_algorithm is "+alg)
		})
		if err != nil {
			return nil, translate("ensure signing key", err)
		}
	}
	return s.ActiveSigningKey(ctx)
}

func hasActive(rows []signingKeyRow, alg string) bool {
	for _, r := range rows {
		if r.Active && r.Algorithm == alg {
			return true
		}
	}
	return false
}

// needReseal returns, for each key sealed under a previous secret, its
// private part sealed under the current one. A key no configured secret
// opens is an error: starting would strand it.
func (s *Store) needReseal(rows []signingKeyRow) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, r := range rows {
		der, which, err := s.unseal(r.PrivateKey, []byte(r.Kid))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", r.Kid, err)
		}
		if which != 0 {
			if out[r.Kid], err = seal(s.sealingKeys[0], der, []byte(r.Kid)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// rotate retires the active key, if any, and makes row the active key,
// auditing it; it runs inside tx, which fixes the rotation's time.
func (s *Store) rotate(tx *gorm.DB, row *signingKeyRow, by Actor, reason string) error {
	now := s.clock()
	row.CreatedAt = now
	var old signingKeyRow
	oldErr := tx.Where("active").Take(&old).Error
	if oldErr != nil && !errors.Is(oldErr, gorm.ErrRecordNotFound) {
		return oldErr
	}
	if err := tx.Model(&signingKeyRow{}).Where("active").
		Updates(map[string]any{"active": false, "retired_at": now}).Error; err != nil {
		return err
	}
	if err := tx.Create(row).Error; err != nil {
		return err
	}
	details := map[string]any{"algorithm": row.Algorithm, "reason": reason}
	if oldErr == nil {
		details["retired_kid"] = old.Kid
	}
	return s.audit(tx, by, "signing_key.rotate", "signing_key", row.Kid, details)
}

// RotateSigningKey makes a new active key for alg and retires the current
// one, which stays published while tokens it signed live. It returns the
// new key (without its private part).
func (s *Store) RotateSigningKey(ctx context.Context, alg string, by Actor) (*SigningKey, error) {
	row, err := s.newSigningKey(alg)
	if err != nil {
		return nil, err
	}
	if err := s.tx(ctx, func(tx *gorm.DB) error { return s.rotate(tx, row, by, "requested") }); err != nil {
		return nil, translate("rotate signing key", err)
	}
	return row.key()
}

// RotateSigningKeyIfOlder rotates when the active key is older than maxAge,
// and reports whether it did. The age is checked on a reader first, so the
// usual answer (too young) never takes the writer, and again inside the
// rotating transaction, so replicas racing on the same schedule rotate once.
func (s *Store) RotateSigningKeyIfOlder(ctx context.Context, alg string, maxAge time.Duration) (bool, error) {
	due := func(db *gorm.DB) (bool, error) {
		var active signingKeyRow
		err := db.Where("active").Take(&active).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return true, nil
		}
		return err == nil && s.clock().Sub(active.CreatedAt) >= maxAge, err
	}
	ok, err := due(s.r.WithContext(ctx))
	if err != nil {
		return false, unavailable("scheduled signing key rotation", err)
	}
	if !ok {
		return false, nil
	}
	row, err := s.newSigningKey(alg)
	if err != nil {
		return false, err
	}
	rotated := false
	err = s.tx(ctx, func(tx *gorm.DB) error {
		ok, err := due(tx)
		if err != nil || !ok {
			return err
		}
		rotated = true
		return s.rotate(tx, row, Actor{Type: "system", Name: "latchkey"}, "signing_key_rotation")
	})
	if err != nil {
		return false, translate("scheduled signing key rotation", err)
	}
	return rotated, nil
}

// ActiveSigningKey returns the active key with its decrypted private part,
// or ErrNotFound before EnsureSigningKey ran.
func (s *Store) ActiveSigningKey(ctx context.Context) (*SigningKey, error) {
	var row signingKeyRow
	if err := s.r.WithContext(ctx).Where("active").Take(&row).Error; err != nil {
		return nil, translate("active signing key", err)
	}
	k, err := row.key()
	if err != nil {
		return nil, err
	}
	der, _, err := s.unseal(row.PrivateKey, []byte(row.Kid))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", row.Kid, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: private key: %w", row.Kid, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not a signer", row.Kid, priv)
	}
	k.Private = signer
	return k, nil
}

// SigningKeys returns every key, active first, then retired newest first,
// with PublishedUntil set for retired keys still published (see
// publishedUntil). Private parts are not decrypted.
func (s *Store) SigningKeys(ctx context.Context) ([]*SigningKey, error) {
	var rows []signingKeyRow
	if err := s.r.WithContext(ctx).Order("active DESC, created_at DESC").Find(&rows).Error; err != nil {
		return nil, unavailable("list signing keys", err)
	}
	now := s.clock()
	out := make([]*SigningKey, 0, len(rows))
	for _, r := range rows {
		k, err := r.key()
		if err != nil {
			return nil, err
		}
		if !r.Active {
			// One index lookup per retired key (kid, expires_at), not a
			// scan of every JWT ever issued.
			var last dbTime
			if err := s.r.WithContext(ctx).Raw(`SELECT MAX(expires_at) FROM access_tokens WHERE kid = ? AND expires_at > ?`,
				r.Kid, now).Row().Scan(&last); err != nil {
				return nil, unavailable("list signing keys", err)
			}
			k.PublishedUntil = publishedUntil(r.RetiredAt, time.Time(last), now)
		}
		out = append(out, k)
	}
	return out, nil
}

// publishedUntil is when a retired key may leave the JWKS: after the last
// live token it signed expires, and not before signingKeyGrace has passed
// since it was retired, since a replica that has not yet seen the rotation
// may still sign with it. Nil means it is no longer published.
func publishedUntil(retiredAt *time.Time, lastExp, now time.Time) *time.Time {
	until := lastExp
	if retiredAt != nil {
		if g := retiredAt.Add(signingKeyGrace); g.After(until) {
			until = g
		}
	}
	if !until.After(now) {
		return nil
	}
	return &until
}

// PublishedSigningKeys returns the keys a verifier may need: the active key
// and every retired key that may still have live tokens, or was retired
// less than signingKeyGrace ago.
func (s *Store) PublishedSigningKeys(ctx context.Context) ([]*SigningKey, error) {
	all, err := s.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, k := range all {
		if k.Active || k.PublishedUntil != nil {
			out = append(out, k)
		}
	}
	return out, nil
}

// dbTime scans a timestamp that may arrive as time.Time or, from an
// aggregate over SQLite, as the text the driver stored.
type dbTime time.Time

func (t *dbTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*t = dbTime{}
		return nil
	case time.Time:
		*t = dbTime(v.UTC())
		return nil
	case string:
		return t.parse(v)
	case []byte:
		return t.parse(string(v))
	}
	return fmt.Errorf("scan %T as a time", v)
}

func (t *dbTime) parse(s string) error {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano, "2006-01-02 15:04:05.999999999"} {
		if v, err := time.Parse(layout, s); err == nil {
			*t = dbTime(v.UTC())
			return nil
		}
	}
	return fmt.Errorf("scan %q as a time", s)
}

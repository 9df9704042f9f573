// Package credential is what latchkey's credentials look like and how they
// are hashed: client IDs, client secrets, admin tokens and the prefix of
// opaque access tokens, their checksums, and the keyed hash the store keeps
// instead of a secret. It depends on nothing else in latchkey, so the store
// can be handed a Minter without knowing the formats, and its tests can use
// the real one.
package credential

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"strings"
)

// Prefixes of the credentials latchkey issues. They are part of the contract:
// secret scanners key on them, and they make a pasted value self-describing.
const (
	ClientIDPrefix     = "lk_ci_"
	ClientSecretPrefix = "lk_cs_"
	AdminTokenPrefix   = "lk_adm_"
	AccessTokenPrefix  = "lk_at_"
)

const (
	secretBodyLen     = 43 // 32 random bytes, base64url without padding
	secretChecksumLen = 6  // CRC32 in base62, zero-padded
	clientIDBodyLen   = 26 // 16 random bytes, base32 without padding
)

var (
	lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	base62      = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewClientID returns a fresh client ID: the prefix and 128 random bits in
// lowercase base32. Client IDs are not secret but must not be guessable,
// so that knowing one integration's ID says nothing about another's.
func NewClientID() string {
	var b [16]byte
	mustRead(b[:])
	return ClientIDPrefix + lowerBase32.EncodeToString(b[:])
}

// NewClientSecret returns a fresh client secret with 256 random bits.
func NewClientSecret() string { return newChecksummed(ClientSecretPrefix) }

// NewAdminToken returns a fresh admin API token with 256 random bits.
func NewAdminToken() string { return newChecksummed(AdminTokenPrefix) }

func newChecksummed(prefix string) string {
	var b [32]byte
	mustRead(b[:])
	s := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return s + checksum(s)
}

// ValidClientID reports whether id has the shape of a client ID, so that
// lookups of garbage never reach the database.
func ValidClientID(id string) bool {
	body, ok := strings.CutPrefix(id, ClientIDPrefix)
	if !ok || len(body) != clientIDBodyLen {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// ValidChecksummed reports whether s is a well-formed secret with the given
// prefix and a matching checksum. A mistyped or truncated secret fails here
// without any database lookup or hash computation.
func ValidChecksummed(s, prefix string) bool {
	if len(s) != len(prefix)+secretBodyLen+secretChecksumLen || !strings.HasPrefix(s, prefix) {
		return false
	}
	body := s[len(prefix) : len(s)-secretChecksumLen]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	rest := s[:len(s)-secretChecksumLen]
	return hmac.Equal([]byte(checksum(rest)), []byte(s[len(rest):]))
}

// checksum is the CRC32 (IEEE) of s in base62, left-padded with zeros to
// six characters; 62^6 > 2^32, so every CRC fits.
func checksum(s string) string {
	n := crc32.ChecksumIEEE([]byte(s))
	var out [secretChecksumLen]byte
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = base62[n%62]
		n /= 62
	}
	return string(out[:])
}

func mustRead(b []byte) {
	// crypto/rand.Read never returns an error on supported platforms since
	// Go 1.24; it crashes the program instead of handing out weak bytes.
	_, _ = rand.Read(b)
}

// DeriveKey derives a purpose-bound 32-byte key from a system secret, so
// that the keys hashing client secrets, admin tokens and access tokens are
// independent even though the operator configures one secret.
func DeriveKey(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("latchkey/v1/" + purpose))
	return m.Sum(nil)
}

// Hasher hashes server-generated secrets with HMAC-SHA-256. Secrets carry
// 256 random bits, so a keyed fast hash resists guessing as well as bcrypt
// does, without capping the token endpoint at bcrypt's few dozen checks per
// second per core. Its Hash and Compare are fosite.Hasher's, for client
// authentication.
//
// Hash uses the first key; Compare accepts a hash made under any key, so an
// operator can rotate the system secret without invalidating stored hashes.
type Hasher struct {
	keys   [][]byte
	prefix string
}

var errHashMismatch = errors.New("secret does not match")

// NewHasher returns a Hasher over keys; keys[0] is current. It panics on
// no keys, which is a wiring bug, never a runtime condition.
func NewHasher(keys ...[]byte) *Hasher {
	if len(keys) == 0 {
		panic("credential: NewHasher needs at least one key")
	}
	return &Hasher{keys: keys}
}

// Hash returns HMAC-SHA-256 of data under the current key.
func (h *Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return h.sum(h.keys[0], data), nil
}

// Checking returns a copy of h whose Compare first rejects data that is not
// a well-formed, checksummed secret with prefix, without hashing it.
func (h *Hasher) Checking(prefix string) *Hasher {
	return &Hasher{keys: h.keys, prefix: prefix}
}

// Compare returns nil when hash is the HMAC of data under any known key.
// The comparison runs in constant time.
func (h *Hasher) Compare(_ context.Context, hash, data []byte) error {
	if h.prefix != "" && !ValidChecksummed(string(data), h.prefix) {
		return errHashMismatch
	}
	for _, k := range h.keys {
		if hmac.Equal(hash, h.sum(k, data)) {
			return nil
		}
	}
	return errHashMismatch
}

// All returns the hash of data under every key, for indexed lookups.
func (h *Hasher) All(data []byte) [][]byte {
	out := make([][]byte, len(h.keys))
	for i, k := range h.keys {
		out[i] = h.sum(k, data)
	}
	return out
}

func (h *Hasher) sum(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// Minter makes credentials and hashes them under keys derived from the
// system secrets. It is what the store is given to make key pairs and
// admin tokens (storage.Credentials), and what checks client secrets.
type Minter struct {
	*Hasher
}

// NewMinter returns a Minter over the system secrets, current first. It
// panics on no secrets, which is a wiring bug.
func NewMinter(secrets [][]byte) *Minter {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = DeriveKey(s, "credential-hash")
	}
	return &Minter{NewHasher(keys...)}
}

func (*Minter) NewClientID() string     { return NewClientID() }
func (*Minter) NewClientSecret() string { return NewClientSecret() }
func (*Minter) NewAdminToken() string   { return NewAdminToken() }

// HashSecret is what the store keeps of secret.
func (m *Minter) HashSecret(secret string) []byte { return m.sum(m.keys[0], []byte(secret)) }

// SecretHashes are secret's hashes under every key, current first, so a
// credential hashed before a secret rotation is still found.
func (m *Minter) SecretHashes(secret string) [][]byte { return m.All([]byte(secret)) }

// SealingKeys are the AES-256 keys that seal signing keys at rest, one per
// system secret, current first.
func SealingKeys(secrets [][]byte) [][]byte {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = DeriveKey(s, "signing-key-encryption")
	}
	return keys
}

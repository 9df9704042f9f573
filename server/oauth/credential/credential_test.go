package credential

import (
	"encoding/base64"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
)

// base62Digits is the checksum alphabet, written out again here so the
// tests check the contract rather than the implementation's copy of it.
const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base64URLDigits is every character a secret body may hold.
const base64URLDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func decodeBase62(t *testing.T, s string) uint64 {
	t.Helper()
	var n uint64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(base62Digits, s[i])
		if d < 0 {
			t.Fatalf("checksum %q: %q is not a base62 digit", s, s[i])
		}
		n = n*62 + uint64(d)
	}
	return n
}

func TestCredentialFormats(t *testing.T) {
	tests := []struct {
		name   string
		gen    func() string
		re     *regexp.Regexp
		prefix string // "" for a value without a checksum
	}{
		{"client ID", NewClientID, regexp.MustCompile(`^lk_ci_[a-z2-7]{26}$`), ""},
		{"client secret", NewClientSecret, regexp.MustCompile(`^lk_cs_[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}$`), ClientSecretPrefix},
		{"admin token", NewAdminToken, regexp.MustCompile(`^lk_adm_[A-Za-z0-9_-]{43}[0-9A-Za-z]{6}$`), AdminTokenPrefix},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for range 200 {
				got := tc.gen()
				if !tc.re.MatchString(got) {
					t.Fatalf("%q does not match %s", got, tc.re)
				}
				if seen[got] {
					t.Fatalf("%q generated twice", got)
				}
				seen[got] = true
				if tc.prefix == "" {
					if !ValidClientID(got) {
						t.Errorf("ValidClientID(%q) = false, want true", got)
					}
					b, err := lowerBase32.DecodeString(strings.TrimPrefix(got, ClientIDPrefix))
					if err != nil || len(b) != 16 {
						t.Errorf("client ID body of %q decodes to %d bytes (%v), want 16", got, len(b), err)
					}
					continue
				}
				if !ValidChecksummed(got, tc.prefix) {
					t.Errorf("ValidChecksummed(%q, %q) = false, want true", got, tc.prefix)
				}
				rest, sum := got[:len(got)-6], got[len(got)-6:]
				b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(rest, tc.prefix))
				if err != nil || len(b) != 32 {
					t.Errorf("body of %q decodes to %d bytes (%v), want 32 (256 bits)", got, len(b), err)
				}
				// The checksum covers the prefix too: "CRC32 of the rest".
				if got, want := decodeBase62(t, sum), uint64(crc32.ChecksumIEEE([]byte(rest))); got != want {
					t.Errorf("checksum of %q = %d, want CRC32 %d", rest, got, want)
				}
			}
		})
	}
}

func TestChecksumKnownAnswers(t *testing.T) {
	// Expected values computed outside Go (Python's zlib.crc32, then base62).
	tests := []struct{ in, want string }{
		{"", "000000"},          // CRC32 0: zero-padded to six characters
		{"123456789", "3jZRME"}, // the CRC-32 check value 0xCBF43926
		{"lk_cs_", "071Kol"},    // 0x062F2403: needs the left padding
	}
	for _, tc := range tests {
		if got := checksum(tc.in); got != tc.want {
			t.Errorf("checksum(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidChecksummedRejectsOneCharacterChange(t *testing.T) {
	for _, prefix := range []string{ClientSecretPrefix, AdminTokenPrefix} {
		for range 5 {
			secret := newChecksummed(prefix)
			for i := 0; i < len(secret); i++ {
				for j := 0; j < len(base64URLDigits); j++ {
					c := base64URLDigits[j]
					if c == secret[i] {
						continue
					}
					mutated := secret[:i] + string(c) + secret[i+1:]
					if ValidChecksummed(mutated, prefix) {
						t.Fatalf("ValidChecksummed(%q, %q) = true after changing position %d of %q", mutated, prefix, i, secret)
					}
				}
			}
		}
	}
}

func TestValidChecksummed(t *testing.T) {
	secret := NewClientSecret()
	body := secret[len(ClientSecretPrefix) : len(secret)-6]
	withSum := func(s string) string { return s + checksum(s) }
	tests := []struct {
		name   string
		s      string
		prefix string
		want   bool
	}{
		{"valid", secret, ClientSecretPrefix, true},
		{"valid admin token", NewAdminToken(), AdminTokenPrefix, true},
		{"empty", "", ClientSecretPrefix, false},
		{"prefix only", ClientSecretPrefix, ClientSecretPrefix, false},
		{"one character short", secret[:len(secret)-1], ClientSecretPrefix, false},
		{"one character long", secret + "A", ClientSecretPrefix, false},
		{"short body, valid checksum", withSum(ClientSecretPrefix + body[1:]), ClientSecretPrefix, false},
		{"long body, valid checksum", withSum(ClientSecretPrefix + body + "A"), ClientSecretPrefix, false},
		{"admin token as client secret", NewAdminToken(), ClientSecretPrefix, false},
		{"client secret as admin token", secret, AdminTokenPrefix, false},
		{"wrong prefix of the same length, valid checksum", withSum("lk_xx_" + body), ClientSecretPrefix, false},
		{"wrong prefix accepted under its own prefix", withSum("lk_xx_" + body), "lk_xx_", true},
		{"non-base64url body character, valid checksum", withSum(ClientSecretPrefix + "+" + body[1:]), ClientSecretPrefix, false},
		{"padding character, valid checksum", withSum(ClientSecretPrefix + body[:42] + "="), ClientSecretPrefix, false},
		{"non-ASCII body, valid checksum", withSum(ClientSecretPrefix + "é" + body[2:]), ClientSecretPrefix, false},
		{"surrounding space", " " + secret[1:], ClientSecretPrefix, false},
		{"uppercase prefix", strings.ToUpper(ClientSecretPrefix) + secret[len(ClientSecretPrefix):], ClientSecretPrefix, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidChecksummed(tc.s, tc.prefix); got != tc.want {
				t.Errorf("ValidChecksummed(%q, %q) = %v, want %v", tc.s, tc.prefix, got, tc.want)
			}
		})
	}
}

func TestValidClientID(t *testing.T) {
	id := NewClientID()
	body := strings.TrimPrefix(id, ClientIDPrefix)
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"valid", id, true},
		{"empty", "", false},
		{"prefix only", ClientIDPrefix, false},
		{"one character short", id[:len(id)-1], false},
		{"one character long", id + "a", false},
		{"uppercase body", ClientIDPrefix + strings.ToUpper(body), false},
		{"digit outside base32", ClientIDPrefix + "1" + body[1:], false},
		{"digit 8", ClientIDPrefix + "8" + body[1:], false},
		{"padding", ClientIDPrefix + body[:25] + "=", false},
		{"secret prefix", ClientSecretPrefix + body, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ValidClientID(tc.id); got != tc.want {
				t.Errorf("ValidClientID(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestDeriveKey(t *testing.T) {
	a := []byte(strings.Repeat("a", 32))
	b := []byte(strings.Repeat("b", 32))
	k := DeriveKey(a, "credential-hash")
	if len(k) != 32 {
		t.Fatalf("len(DeriveKey) = %d, want 32", len(k))
	}
	if got := DeriveKey(a, "credential-hash"); string(got) != string(k) {
		t.Error("DeriveKey is not deterministic")
	}
	if got := DeriveKey(a, "signing-key"); string(got) == string(k) {
		t.Error("DeriveKey gives the same key for two purposes")
	}
	if got := DeriveKey(b, "credential-hash"); string(got) == string(k) {
		t.Error("DeriveKey gives the same key for two secrets")
	}
	if string(k) == string(a) {
		t.Error("DeriveKey returned the secret itself")
	}
}

func TestHasherCompare(t *testing.T) {
	ctx := t.Context()
	oldKey := DeriveKey([]byte(strings.Repeat("o", 32)), "credential-hash")
	newKey := DeriveKey([]byte(strings.Repeat("n", 32)), "credential-hash")
	old := NewHasher(oldKey)
	rotated := NewHasher(newKey, oldKey) // the operator rotated: new secret first
	secret := []byte(NewClientSecret())
	hash := func(h *Hasher, data []byte) []byte {
		t.Helper()
		b, err := h.Hash(ctx, data)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		return b
	}
	hOld, hNew := hash(old, secret), hash(rotated, secret)
	if len(hNew) != 32 {
		t.Fatalf("len(Hash) = %d, want 32 (HMAC-SHA-256)", len(hNew))
	}
	if string(hOld) == string(hNew) {
		t.Fatal("Hash under the rotated hasher used the old key, want the first (current) key")
	}
	if got := hash(rotated, secret); string(got) != string(hNew) {
		t.Fatal("Hash is not deterministic")
	}
	flipped := append([]byte(nil), hNew...)
	flipped[len(flipped)-1] ^= 1

	tests := []struct {
		name   string
		h      *Hasher
		hash   []byte
		data   []byte
		wantOK bool
	}{
		{"current key", rotated, hNew, secret, true},
		{"hash under the second (rotated-out) key", rotated, hOld, secret, true},
		{"hash under a key the hasher does not know", old, hNew, secret, false},
		{"other data", rotated, hNew, []byte(NewClientSecret()), false},
		{"empty data", rotated, hNew, nil, false},
		{"last hash byte flipped", rotated, flipped, secret, false},
		{"truncated hash", rotated, hNew[:31], secret, false},
		{"extended hash", rotated, append(append([]byte(nil), hNew...), 0), secret, false},
		{"empty hash", rotated, nil, secret, false},
		{"the data as its own hash", rotated, secret, secret, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Compare(ctx, tc.hash, tc.data)
			if gotOK := err == nil; gotOK != tc.wantOK {
				t.Errorf("Compare = %v, want ok = %v", err, tc.wantOK)
			}
		})
	}
}

func TestHasherChecking(t *testing.T) {
	ctx := t.Context()
	oldKey := DeriveKey([]byte(strings.Repeat("o", 32)), "credential-hash")
	newKey := DeriveKey([]byte(strings.Repeat("n", 32)), "credential-hash")
	plain := NewHasher(newKey, oldKey)
	checking := plain.Checking(ClientSecretPrefix)
	old := NewHasher(oldKey)

	secret := NewClientSecret()
	mistyped := secret[:10] + string(secret[10]^1) + secret[11:]
	adminToken := NewAdminToken()
	hash := func(h *Hasher, s string) []byte {
		t.Helper()
		b, err := h.Hash(ctx, []byte(s))
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		return b
	}
	tests := []struct {
		name   string
		hash   []byte // a correct hash of data, so only the format check can reject it
		data   string
		wantOK bool
	}{
		{"well-formed secret", hash(plain, secret), secret, true},
		{"well-formed secret hashed under the second key", hash(old, secret), secret, true},
		{"arbitrary text", hash(plain, "hunter2"), "hunter2", false},
		{"empty", hash(plain, ""), "", false},
		{"admin token", hash(plain, adminToken), adminToken, false},
		{"mistyped secret", hash(plain, mistyped), mistyped, false},
		{"truncated secret", hash(plain, secret[:len(secret)-1]), secret[:len(secret)-1], false},
		{"secret with trailing newline", hash(plain, secret+"\n"), secret + "\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checking.Compare(ctx, tc.hash, []byte(tc.data))
			if gotOK := err == nil; gotOK != tc.wantOK {
				t.Errorf("Checking(%q).Compare = %v, want ok = %v", ClientSecretPrefix, err, tc.wantOK)
			}
			// Checking returns a copy: the plain hasher still compares
			// anything whose hash matches.
			if err := plain.Compare(ctx, tc.hash, []byte(tc.data)); err != nil {
				t.Errorf("plain Compare = %v after Checking, want nil", err)
			}
		})
	}
	if got, want := hash(checking, secret), hash(plain, secret); string(got) != string(want) {
		t.Error("Checking hasher hashes differently from the hasher it came from")
	}
}

func TestNewHasherWithoutKeysPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewHasher() did not panic")
		}
	}()
	NewHasher()
}

package credential

// FuzzSecretFormat checks the credential formats of the contract (client
// ID, client secret, admin token) against an independent reading of
// DESIGN.md. Run it for a bounded time with
//
//	go test ./server/oauth/credential -run '^$' -fuzz '^FuzzSecretFormat$' -fuzztime 60s -fuzzminimizetime 5s -parallel 1
//
// `go test ./server/oauth/credential -run Fuzz` runs only the seeds (f.Add and
// testdata/fuzz/FuzzSecretFormat/).

import (
	"context"
	"hash/crc32"
	"strings"
	"testing"
)

// fuzzBase62 and fuzzBase64URL are the contract's alphabets, written out
// here so that the oracle shares nothing with the implementation.
const (
	fuzzBase62    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	fuzzBase64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	fuzzBase32Low = "abcdefghijklmnopqrstuvwxyz234567"
)

// fuzzWantChecksummed is the contract's rule for a checksummed secret:
// prefix, 43 base64url characters, then 6 base62 digits whose value is
// the CRC32 (IEEE) of everything before them.
func fuzzWantChecksummed(s, prefix string) bool {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 43+6 {
		return false
	}
	for i := 0; i < 43; i++ {
		if strings.IndexByte(fuzzBase64URL, rest[i]) < 0 {
			return false
		}
	}
	var n uint64
	for i := 43; i < 49; i++ {
		d := strings.IndexByte(fuzzBase62, rest[i])
		if d < 0 {
			return false
		}
		n = n*62 + uint64(d)
	}
	return n == uint64(crc32.ChecksumIEEE([]byte(s[:len(s)-6])))
}

// fuzzWantClientID is the contract's client ID: lk_ci_ and 26 lowercase
// base32 characters.
func fuzzWantClientID(s string) bool {
	body, ok := strings.CutPrefix(s, "lk_ci_")
	if !ok || len(body) != 26 {
		return false
	}
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(fuzzBase32Low, body[i]) < 0 {
			return false
		}
	}
	return true
}

// FuzzSecretFormat feeds arbitrary strings and prefixes to the format
// checks, and mutates freshly generated credentials.
//
// Invariants: nothing panics; ValidChecksummed and ValidClientID agree
// with the oracle above for every string and prefix; an accepted secret's
// checksum is what checksum computes for its body (the encoding round-
// trips); every generated credential validates; replacing any one
// character of an accepted secret by another, swapping two adjacent
// different characters, or adding or dropping one, makes it fail; and a
// Hasher checking a prefix accepts the hash of exactly the strings
// ValidChecksummed accepts.
func FuzzSecretFormat(f *testing.F) {
	good := NewClientSecret()
	adm := NewAdminToken()
	id := NewClientID()
	for _, s := range []struct {
		s, prefix string
		pos       uint16
		c, op     byte
	}{
		{good, ClientSecretPrefix, 0, 'x', 0},
		{good, ClientSecretPrefix, uint16(len(good) - 1), '0', 1},
		{adm, AdminTokenPrefix, 10, 'A', 2},
		{id, ClientIDPrefix, 6, 'z', 3},
		{good, AdminTokenPrefix, 6, '-', 0},
		{adm, ClientSecretPrefix, 48, '_', 1},
		{"lk_cs_" + strings.Repeat("A", 43) + "000000", ClientSecretPrefix, 0, 0, 0},
		{"lk_cs_" + strings.Repeat("A", 43) + "zzzzzz", ClientSecretPrefix, 0, 0, 0},
		{"lk_cs_" + strings.Repeat("=", 43) + "000000", ClientSecretPrefix, 0, 0, 0},
		{"lk_cs_" + strings.Repeat("é", 21) + "A" + "000000", ClientSecretPrefix, 0, 0, 0},
		{"lk_cs_", ClientSecretPrefix, 0, 0, 0},
		{"", "", 0, 0, 0},
		{"", ClientSecretPrefix, 0, 0, 0},
		{strings.Repeat("x", 49), "", 0, 0, 0},
		{"lk_ci_" + strings.Repeat("a", 26), ClientIDPrefix, 0, 0, 3},
		{"lk_ci_" + strings.Repeat("A", 26), ClientIDPrefix, 0, 0, 3},
		{"lk_ci_" + strings.Repeat("1", 26), ClientIDPrefix, 0, 0, 3},
		{"lk_ci_" + strings.Repeat("a", 25) + "\x00", ClientIDPrefix, 0, 0, 3},
		{"LK_CS_" + good[6:], ClientSecretPrefix, 0, 0, 0},
		{good + "\n", ClientSecretPrefix, 0, 0, 0},
		{" " + good, ClientSecretPrefix, 0, 0, 0},
		{"\xff\xfe\xfd", "\xff", 0, 0, 0},
	} {
		f.Add(s.s, s.prefix, s.pos, s.c, s.op)
	}

	hasher := NewHasher([]byte("fuzz-system-secret-0123456789abcdef"))
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, s, prefix string, pos uint16, c, op byte) {
		if len(s)+len(prefix) > 4096 {
			// Longer strings exercise nothing new and are slow to minimize.
			t.Skip("input too long")
		}
		// Arbitrary strings against the oracle, under the contract's
		// prefixes and the fuzzed one.
		for _, p := range []string{ClientSecretPrefix, AdminTokenPrefix, prefix} {
			got, want := ValidChecksummed(s, p), fuzzWantChecksummed(s, p)
			if got != want {
				t.Fatalf("ValidChecksummed(%q, %q) = %v, want %v", s, p, got, want)
			}
			if got {
				rest := s[:len(s)-secretChecksumLen]
				if cs := checksum(rest); cs != s[len(rest):] {
					t.Fatalf("accepted %q, but the checksum of its body is %q", s, cs)
				}
				fuzzCheckMutationsFail(t, s, p, pos, c)
			}
		}
		if got, want := ValidClientID(s), fuzzWantClientID(s); got != want {
			t.Fatalf("ValidClientID(%q) = %v, want %v", s, got, want)
		}

		// The checking Hasher agrees with the format check.
		for _, p := range []string{ClientSecretPrefix, prefix} {
			h := hasher.Checking(p)
			sum, err := h.Hash(ctx, []byte(s))
			if err != nil {
				t.Fatalf("Hash(%q): %v", s, err)
			}
			if err := h.Compare(ctx, sum, []byte(s)); (err == nil) != (p == "" || ValidChecksummed(s, p)) {
				t.Fatalf("Checking(%q).Compare(Hash(%q)) = %v, want nil exactly when the format is valid", p, s, err)
			}
		}

		// Fresh credentials validate, and stop validating when mutated.
		switch op % 4 {
		case 0, 1:
			g := NewClientSecret()
			if !ValidChecksummed(g, ClientSecretPrefix) || ValidChecksummed(g, AdminTokenPrefix) {
				t.Fatalf("generated client secret %q does not validate as exactly a client secret", g)
			}
			fuzzCheckMutationsFail(t, g, ClientSecretPrefix, pos, c)
		case 2:
			g := NewAdminToken()
			if !ValidChecksummed(g, AdminTokenPrefix) || ValidChecksummed(g, ClientSecretPrefix) {
				t.Fatalf("generated admin token %q does not validate as exactly an admin token", g)
			}
			fuzzCheckMutationsFail(t, g, AdminTokenPrefix, pos, c)
		case 3:
			g := NewClientID()
			if !ValidClientID(g) {
				t.Fatalf("generated client ID %q does not validate", g)
			}
			// No checksum: a changed character is valid exactly when it
			// stays in the alphabet.
			i := int(pos) % len(g)
			m := g[:i] + string(c) + g[i+1:]
			if got, want := ValidClientID(m), fuzzWantClientID(m); got != want {
				t.Fatalf("ValidClientID(%q) = %v, want %v", m, got, want)
			}
		}
	})
}

// fuzzCheckMutationsFail fails t unless every small edit of the valid
// secret s (prefix p) is refused: one character replaced at pos, the
// characters at pos and pos+1 swapped, one character inserted at pos, one
// dropped at pos. CRC32 detects every error burst of up to 32 bits, so
// none of these can keep the checksum right.
func fuzzCheckMutationsFail(t *testing.T, s, p string, pos uint16, c byte) {
	t.Helper()
	i := int(pos) % len(s)
	check := func(what, m string) {
		t.Helper()
		if m != s && ValidChecksummed(m, p) {
			t.Fatalf("%s of valid %q gives %q, which still validates", what, s, m)
		}
	}
	check("replacing one character", s[:i]+string(c)+s[i+1:])
	if i+1 < len(s) {
		check("swapping two characters", s[:i]+string(s[i+1])+string(s[i])+s[i+2:])
	}
	check("inserting one character", s[:i]+string(c)+s[i:])
	check("dropping one character", s[:i]+s[i+1:])
}

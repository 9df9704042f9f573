package server

import "strings"

// redactedPrefixes start the credentials latchkey issues whose value is a
// secret; a client ID (lk_ci_) is not one.
var redactedPrefixes = []string{"lk_cs_", "lk_adm_", "lk_at_"}

// redact returns s with every credential in it replaced by its kind and
// "[redacted]": latchkey's client secrets, admin tokens and opaque access
// tokens by their prefix, and anything shaped like a JWT (three base64url
// parts, the first starting "eyJ", as every JSON header does). An admin who
// pastes a leaked token into a URL path (DELETE /admin/tokens/lk_adm_…)
// must not copy it into the access log or have it echoed in an error body.
func redact(s string) string {
	if !strings.Contains(s, "lk_") && !strings.Contains(s, "eyJ") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if end, kind := credentialAt(s, i); end > i {
			b.WriteString(kind)
			b.WriteString("[redacted]")
			i = end
			continue
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// credentialAt reports where a credential starting at s[i] ends and the
// prefix it is shown with; end is i when none starts there.
func credentialAt(s string, i int) (end int, kind string) {
	if i > 0 && tokenChar(s[i-1]) {
		return i, "" // inside a longer word
	}
	rest := s[i:]
	for _, p := range redactedPrefixes {
		if strings.HasPrefix(rest, p) {
			return i + len(p) + tokenRun(rest[len(p):], false), p
		}
	}
	if strings.HasPrefix(rest, "eyJ") {
		n := tokenRun(rest, true)
		if strings.Count(rest[:n], ".") == 2 {
			return i + n, ""
		}
	}
	return i, ""
}

// tokenRun is the length of the run of base64url characters (and dots,
// when dots is set) at the start of s.
func tokenRun(s string, dots bool) int {
	n := 0
	for n < len(s) && (tokenChar(s[n]) || dots && s[n] == '.') {
		n++
	}
	return n
}

func tokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

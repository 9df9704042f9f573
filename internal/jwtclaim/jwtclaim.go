// Package jwtclaim reads JWT claims the way latchkey's checks of client
// assertions and DPoP proofs both need: strictly, and bounded.
package jwtclaim

import (
	"encoding/json"
	"math"
	"time"
)

// NumericDate reads a JWT NumericDate (RFC 7519 §2), which may have a
// fraction. It refuses what is not a finite number within a few thousand
// years of 1970, so a huge value cannot overflow into a plausible time.
func NumericDate(n json.Number) (time.Time, bool) {
	if n == "" {
		return time.Time{}, false
	}
	if i, err := n.Int64(); err == nil {
		return time.Unix(i, 0), true
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// Algorithms are the signature algorithms latchkey takes on JWTs a client
// signs, client assertions and DPoP proofs alike: asymmetric only, never
// none or HS*, whose key the server would have to hold.
var Algorithms = []string{"ES256", "EdDSA", "RS256", "PS256"}

// Bounds on what a client's JWT may carry: a jti is kept in a replay store,
// and an RSA key outside these sizes is weak or a CPU sink.
const (
	MaxJTILen  = 256
	MinRSABits = 2048
	MaxRSABits = 8192
)

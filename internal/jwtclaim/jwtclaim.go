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

package server

import (
	"fmt"
	"time"
)

// IssuanceLimit caps the access tokens each integration is issued: Burst at
// once, then PerMinute a minute. Every token is a row kept for its whole
// lifetime, so without a cap one client asking for a token per API call
// fills the disk. An integration's token_rate_per_minute overrides
// PerMinute (0: no cap); a zero PerMinute leaves only integrations with a
// rate of their own capped.
type IssuanceLimit struct {
	PerMinute int
	Burst     int
}

// issuance keeps one token bucket per integration, in this process only:
// N replicas each allow the whole rate, so together up to N times it. A
// shared count would put a database write, or a round trip to another
// store, on every token request, to tighten a bound that N already keeps
// small.
//
// The rate is the caller's to pass on every take, read with the client
// that authenticated, so a changed token_rate_per_minute applies to the
// next request without any cache to invalidate. Only authenticated
// integrations get a bucket, so the buckets' bound on keys is met only by
// a server with that many integrations busy at once.
type issuance struct {
	def IssuanceLimit
	// window is how many minutes of its rate an integration may take at
	// once: Burst/PerMinute, so that an integration with a rate ten times
	// the default also gets ten times the burst (a fleet ten times the
	// size starting at once). With no default rate it is one minute.
	window  float64
	buckets *buckets[int64]
}

func newIssuance(l IssuanceLimit, now func() time.Time) *issuance {
	is := &issuance{def: l, window: 1, buckets: newBuckets[int64](now)}
	if l.PerMinute > 0 && l.Burst > 0 {
		is.window = float64(l.Burst) / float64(l.PerMinute)
	}
	return is
}

// rate is the cap on integration tokens a minute: its own, else the
// default; 0 is none.
func (is *issuance) rate(own *int64) int64 {
	if own != nil {
		return *own
	}
	return int64(is.def.PerMinute)
}

// take takes one token from integration id's bucket at perMinute (0: no
// cap, and nothing is recorded). When the bucket is empty it takes nothing
// and returns how long until it holds a token again.
func (is *issuance) take(id, perMinute int64) (wait time.Duration, ok bool) {
	if perMinute <= 0 {
		return 0, true
	}
	ok, wait = is.buckets.take(id, float64(perMinute)/60, max(1, float64(perMinute)*is.window))
	return wait, ok
}

// issuanceLimited is the error issue returns when the integration's cap
// refuses a token. It is answered by writeTooMany with slow_down, and not
// counted as a failure: the client authenticated correctly.
type issuanceLimited struct {
	perMinute int64
	wait      time.Duration
}

func (e *issuanceLimited) Error() string {
	return fmt.Sprintf("integration token rate of %d a minute exceeded", e.perMinute)
}

// description is the 429's error_description as writeTooMany takes it, a
// format for the seconds to wait. It says what to do instead.
func (e *issuanceLimited) description() string {
	return fmt.Sprintf("Too many tokens for this integration (its cap: %d a minute); try again in %%d s. Reuse a token until it expires (expires_in) instead of asking for one per call.",
		e.perMinute)
}

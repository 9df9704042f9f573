package server

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
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
// next request without any cache to invalidate.
type issuance struct {
	def IssuanceLimit
	// window is how many minutes of its rate an integration may take at
	// once: Burst/PerMinute, so that an integration with a rate ten times
	// the default also gets ten times the burst (a fleet ten times the
	// size starting at once). With no default rate it is one minute.
	window float64
	now    func() time.Time
	shards [issuanceShards]issuanceShard
}

const (
	issuanceShards = 32
	// maxIssuanceKeys bounds the buckets. Only authenticated integrations
	// get one, so the bound is met only by a server with that many
	// integrations busy at once, and then costs them some of their cap.
	maxIssuanceKeys = 1 << 16
)

type issuanceShard struct {
	mu      sync.Mutex
	buckets map[int64]*issuanceBucket
}

// issuanceBucket remembers the rate it was last filled at, so eviction can
// tell a full bucket (which carries no information) from one in use.
type issuanceBucket struct {
	tokens, perSecond, burst float64
	last                     time.Time
}

func newIssuance(l IssuanceLimit, now func() time.Time) *issuance {
	is := &issuance{def: l, window: 1, now: now}
	if l.PerMinute > 0 && l.Burst > 0 {
		is.window = float64(l.Burst) / float64(l.PerMinute)
	}
	for i := range is.shards {
		is.shards[i].buckets = make(map[int64]*issuanceBucket)
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
	perSecond := float64(perMinute) / 60
	burst := max(1, float64(perMinute)*is.window)
	now := is.now()
	sh := &is.shards[uint64(id)%issuanceShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[id]
	if b == nil {
		if len(sh.buckets) >= maxIssuanceKeys/issuanceShards {
			sh.evict(now)
		}
		b = &issuanceBucket{tokens: burst, last: now}
		sh.buckets[id] = b
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens += dt.Seconds() * perSecond
		b.last = now
	}
	// A lowered rate, or burst, applies at once.
	b.tokens = min(b.tokens, burst)
	b.perSecond, b.burst = perSecond, burst
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / perSecond * float64(time.Second)), false
}

// evict makes room in a full shard: refilled buckets go first; if none has
// refilled, one arbitrary bucket does (map order is random).
func (sh *issuanceShard) evict(now time.Time) {
	for id, b := range sh.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.perSecond >= b.burst {
			delete(sh.buckets, id)
		}
	}
	if len(sh.buckets) < maxIssuanceKeys/issuanceShards {
		return
	}
	for id := range sh.buckets {
		delete(sh.buckets, id)
		return
	}
}

// issuanceLimited is the error issue returns when the integration's cap
// refuses a token.
type issuanceLimited struct {
	perMinute int64
	wait      time.Duration
}

func (e *issuanceLimited) Error() string {
	return fmt.Sprintf("integration token rate of %d a minute exceeded", e.perMinute)
}

// writeIssuanceLimited answers 429 slow_down with Retry-After. The client
// authenticated correctly: this is not counted as a failure, and the
// description says what to do instead.
func (s *Server) writeIssuanceLimited(w http.ResponseWriter, e *issuanceLimited) {
	s.metrics.limitedBy["issuance"].Inc()
	secs := retryAfter(e.wait)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, "slow_down", fmt.Sprintf(
		"Too many tokens for this integration (its cap: %d a minute); try again in %d s. Reuse a token until it expires (expires_in) instead of asking for one per call.",
		e.perMinute, secs))
}

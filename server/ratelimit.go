package server

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// RateLimit is a token bucket: Burst failures at once, then PerMinute a
// minute. A zero PerMinute turns the limit off.
type RateLimit struct {
	PerMinute int
	Burst     int
	// MaxDelay is the longest a refused request is held before its 429;
	// zero means one second.
	MaxDelay time.Duration
}

func (l RateLimit) on() bool { return l.PerMinute > 0 && l.Burst > 0 }

// limiter keeps one token bucket per key (a client ID or an address). Only
// failures take tokens, so a client that authenticates correctly is never
// slowed down by its own traffic, however heavy.
//
// Buckets live in shards, each behind its own mutex, so concurrent requests
// rarely contend. A shard holds at most maxKeys/limiterShards buckets: an
// attacker inventing keys evicts refilled buckets first (they carry no
// information), then arbitrary ones, and never grows memory without bound.
type limiter struct {
	perSecond float64
	burst     float64
	now       func() time.Time
	seed      maphash.Seed
	shards    [limiterShards]limiterShard
}

const (
	limiterShards = 32
	// maxKeys bounds a limiter's memory to a few megabytes.
	maxKeys = 1 << 16
)

type limiterShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l RateLimit, now func() time.Time) *limiter {
	if !l.on() {
		return nil
	}
	lim := &limiter{
		perSecond: float64(l.PerMinute) / 60,
		burst:     float64(l.Burst),
		now:       now,
		seed:      maphash.MakeSeed(),
	}
	for i := range lim.shards {
		lim.shards[i].buckets = make(map[string]*bucket)
	}
	return lim
}

func (l *limiter) shard(key string) *limiterShard {
	return &l.shards[maphash.String(l.seed, key)%limiterShards]
}

// level returns key's bucket level (burst when there is none) and, when it
// is below one failure, how long until it reaches one.
func (l *limiter) level(key string) (tokens float64, wait time.Duration) {
	if l == nil {
		return math.Inf(1), 0
	}
	sh := l.shard(key)
	sh.mu.Lock()
	b := sh.buckets[key]
	if b == nil {
		sh.mu.Unlock()
		return l.burst, 0
	}
	tokens = l.refill(b, l.now())
	sh.mu.Unlock()
	if tokens < 1 {
		wait = time.Duration((1 - tokens) / l.perSecond * float64(time.Second))
	}
	return tokens, wait
}

// clean reports whether key has no failures left to refill.
func (l *limiter) clean(key string) bool {
	if l == nil {
		return true
	}
	tokens, _ := l.level(key)
	return tokens >= l.burst
}

// fail takes one token from key's bucket.
func (l *limiter) fail(key string) {
	if l == nil || key == "" {
		return
	}
	now := l.now()
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= maxKeys/limiterShards {
			l.evict(sh, now)
		}
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[key] = b
	}
	l.refill(b, now)
	b.tokens = max(b.tokens-1, -l.burst)
}

// refill brings b up to date and returns its level.
func (l *limiter) refill(b *bucket, now time.Time) float64 {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(l.burst, b.tokens+dt.Seconds()*l.perSecond)
		b.last = now
	}
	return b.tokens
}

// evict makes room in a full shard: refilled buckets go first; if none
// has refilled, one arbitrary bucket does (map order is random).
func (l *limiter) evict(sh *limiterShard, now time.Time) {
	for k, b := range sh.buckets {
		if l.refill(b, now) >= l.burst {
			delete(sh.buckets, k)
		}
	}
	if len(sh.buckets) < maxKeys/limiterShards {
		return
	}
	for k := range sh.buckets {
		delete(sh.buckets, k)
		return
	}
}

// authLimits holds the limits on failed client authentication at the
// OAuth endpoints.
//
// An address that has failed too often is refused outright, before any
// database work, so a flood from it costs next to nothing. A client ID that
// has failed too often is refused only to addresses that have failed
// themselves: the integration's real deployment, somewhere else and
// presenting the right secret, keeps working while someone guesses at its
// secret.
type authLimits struct {
	byClient, byAddr *limiter
}

// check returns which limit refuses the request ("address" or "client")
// and when to retry, or "" when it may go ahead.
func (a *authLimits) check(addr, clientID string) (string, time.Duration) {
	if tokens, wait := a.byAddr.level(addr); tokens < 1 {
		return "address", wait
	}
	if clientID == "" {
		return "", 0
	}
	if tokens, wait := a.byClient.level(clientID); tokens < 1 && !a.byAddr.clean(addr) {
		return "client", wait
	}
	return "", 0
}

// failed records a failed authentication. knownClient is false when the
// client ID matches no key pair: counting those per ID would let anyone
// fill the table with invented IDs, so only the address pays.
func (a *authLimits) failed(addr, clientID string, knownClient bool) {
	a.byAddr.fail(addr)
	if knownClient {
		a.byClient.fail(clientID)
	}
}

// tarpitSlots bounds how many refused requests are held at once; past it,
// refusals are answered at once. A held request costs a parked goroutine
// and nothing else.
const tarpitSlots = 4096

// holdRefused holds a refused request until its limit would let it through
// (at most maxDelay) before it is answered. A flood retries as soon as it is
// answered, so a 429 answered at once invites the next request at once, and
// even cheap refusals then take the CPU from everyone else; held, each of the
// flood's connections sends about one request per delay.
func (s *Server) holdRefused(ctx context.Context, wait, maxDelay time.Duration) {
	if maxDelay <= 0 {
		maxDelay = time.Second
	}
	select {
	case s.tarpit <- struct{}{}:
	default:
		return
	}
	defer func() { <-s.tarpit }()
	t := time.NewTimer(min(wait, maxDelay))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// retryAfter is a Retry-After value: whole seconds, at least one.
func retryAfter(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}

package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// RateLimit is a token bucket of failures: Burst at once, then PerMinute a
// minute. A zero PerMinute turns the limit off.
type RateLimit struct {
	PerMinute int
	Burst     int
	// MaxDelay is the longest a failed request is held before it is
	// answered; zero means one second.
	MaxDelay time.Duration
}

func (l RateLimit) on() bool { return l.PerMinute > 0 && l.Burst > 0 }

func (l RateLimit) maxDelay() time.Duration {
	if l.MaxDelay <= 0 {
		return time.Second
	}
	return l.MaxDelay
}

// Every failure spends from the global budget as well; these multiples of
// the per-address limit make it a budget for a crowd, not for one client.
// A flood from a fresh address per request never empties an address's
// bucket, but it does empty this one, and from then on its failures are
// held like a single address's.
const (
	globalRateFactor  = 100
	globalBurstFactor = 10
)

// limiter is a set of buckets of failures that all refill at one rate.
// Only failures spend tokens, so a client that authenticates correctly is
// never slowed down by its own traffic, however heavy.
type limiter struct {
	perSecond, burst float64
	buckets          *buckets[string]
}

func newLimiter(perMinute, burst float64, now func() time.Time) *limiter {
	return &limiter{perSecond: perMinute / 60, burst: burst, buckets: newBuckets[string](now)}
}

// take spends one failure from key's bucket. When the bucket is empty it
// spends nothing and returns how long until a failure is allowed again: a
// client that keeps failing is answered at the bucket's rate, so it still
// learns that its credentials are wrong, however fast it retries.
func (l *limiter) take(key string) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	return l.buckets.take(key, l.perSecond, l.burst)
}

// failureLimits decide how a failed authentication is answered. They never
// refuse a request before its credentials are checked: checking costs a
// checksum, at most one indexed lookup and one HMAC, and a request with the
// right credentials then always goes through, whoever else fails from its
// address (a NAT, a Kubernetes node, a proxy) or for its client ID.
//
// What they slow is the failing request itself. Its own bucket, keyed by
// its address and the client ID it presented, decides between the failure
// it earned (401) and 429 slow_down; the buckets of its address, of a real
// client ID it guesses at from anywhere, and the global budget decide only
// whether its answer is held. A held answer keeps a flood's connection
// from sending its next request, so the flood's rate falls to about one
// request per connection per delay, whatever it retries at.
type failureLimits struct {
	// pair is keyed by address and client ID; addr and client are nil
	// for admin tokens, where the address alone is the pair.
	pair, addr, client, global *limiter
	maxDelay                   time.Duration
	// pairName names the pair limit in verdicts.
	pairName string
}

// newFailureLimits returns nil, no limits, when l is off. perClient keys
// the failing party by address and client ID, else by address alone.
func newFailureLimits(l RateLimit, perClient bool, now func() time.Time) *failureLimits {
	if !l.on() {
		return nil
	}
	rate, burst := float64(l.PerMinute), float64(l.Burst)
	f := &failureLimits{
		pair:     newLimiter(rate, burst, now),
		global:   newLimiter(rate*globalRateFactor, burst*globalBurstFactor, now),
		maxDelay: l.maxDelay(),
		pairName: "address",
	}
	if perClient {
		f.pairName = "pair"
		f.addr = newLimiter(rate, burst, now)
		f.client = newLimiter(rate, burst, now)
	}
	return f
}

// verdict is how to answer one failure: after holding it for hold, with
// 429 and Retry-After rather than the failure itself when refuse is set.
// limit names what slowed it, for the metrics; empty when nothing did.
type verdict struct {
	refuse bool
	hold   time.Duration
	retry  time.Duration
	limit  string
}

// failed records one failure by the party at addr presenting clientID
// (empty for admin tokens); knownClient is true when clientID names a
// working key pair, whose own bucket then counts the guesses at it from
// every address. An unknown ID gets no bucket of its own: anyone could
// invent them by the million.
func (f *failureLimits) failed(addr, clientID string, knownClient bool) verdict {
	if f == nil {
		return verdict{}
	}
	a := addrKey(addr)
	pairKey := a
	if f.addr != nil {
		pairKey = a + " " + clientID
	}
	if ok, wait := f.pair.take(pairKey); !ok {
		return verdict{refuse: true, hold: min(wait, f.maxDelay), retry: wait, limit: f.pairName}
	}
	var v verdict
	spend := func(l *limiter, key, name string) {
		if ok, wait := l.take(key); !ok && (v.limit == "" || wait > v.hold) {
			v.hold, v.limit = wait, name
		}
	}
	if f.addr != nil {
		spend(f.addr, a, "address")
	}
	if knownClient && f.client != nil {
		spend(f.client, clientID, "client")
	}
	spend(f.global, "", "global")
	v.hold = min(v.hold, f.maxDelay)
	return v
}

// addrKey is the party an address stands for: an IPv4 address itself, an
// IPv6 address by its /64, which one host or one customer usually holds
// whole and could otherwise walk through address by address.
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is6() || a.Is4In6() {
		return addr
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// tarpitSlots bounds how many failed requests are held at once; past it,
// they are answered at once, and their connection is closed so that the
// client must pay for a new one. A held request costs a parked goroutine
// and nothing else.
const tarpitSlots = 4096

// hold delays a failed request's answer by d, or less when its client
// gives up first.
func (s *Server) hold(w http.ResponseWriter, ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case s.tarpit <- struct{}{}:
	default:
		w.Header().Set("Connection", "close")
		return
	}
	defer func() { <-s.tarpit }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// writeTooMany answers 429 with code, a Retry-After of wait in whole
// seconds (at least one), and the description format filled with those
// seconds.
func writeTooMany(w http.ResponseWriter, code string, wait time.Duration, format string) {
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, code, fmt.Sprintf(format, secs))
}

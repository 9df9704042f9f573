package server

import (
	"hash/maphash"
	"sync"
	"time"
)

// buckets keeps one token bucket per key: the failure limits (keyed by
// address and client ID) and the issuance cap (keyed by integration) are
// both made of them. The rate and burst come with every take rather than
// with the key, so a bucket follows a changed rate from its next take.
//
// Buckets live in shards, each behind its own mutex, so concurrent requests
// rarely contend. A shard holds at most maxBucketKeys/bucketShards buckets:
// whoever invents keys evicts full buckets first (they carry no
// information), else the fullest of a few, and never grows memory without
// bound.
type buckets[K comparable] struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [bucketShards]bucketShard[K]
}

const (
	bucketShards = 32
	// maxBucketKeys bounds one set of buckets to a few megabytes.
	maxBucketKeys = 1 << 16
)

type bucketShard[K comparable] struct {
	mu sync.Mutex
	m  map[K]*bucket
}

// bucket remembers the rate it was last filled at, so eviction can tell a
// full bucket from one in use.
type bucket struct {
	tokens, perSecond, burst float64
	last                     time.Time
}

func newBuckets[K comparable](now func() time.Time) *buckets[K] {
	bs := &buckets[K]{now: now, seed: maphash.MakeSeed()}
	for i := range bs.shards {
		bs.shards[i].m = make(map[K]*bucket)
	}
	return bs
}

// take spends one token from key's bucket, which refills at perSecond up
// to burst (a new bucket starts full; a lowered burst applies at once).
// When the bucket is empty it spends nothing and returns how long until a
// token is back.
func (bs *buckets[K]) take(key K, perSecond, burst float64) (ok bool, wait time.Duration) {
	now := bs.now()
	sh := &bs.shards[maphash.Comparable(bs.seed, key)%bucketShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[key]
	if b == nil {
		if len(sh.m) >= maxBucketKeys/bucketShards {
			sh.evict(now)
		}
		b = &bucket{tokens: burst, last: now}
		sh.m[key] = b
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens += dt.Seconds() * perSecond
		b.last = now
	}
	b.tokens = min(b.tokens, burst)
	b.perSecond, b.burst = perSecond, burst
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
}

// evict makes room in a full shard by deleting the fullest of a few
// buckets, or the first full one among them: a full bucket carries no
// information, a spent one is what the limits remember about a failing
// party. It looks at evictSample buckets at most (map iteration starts at
// a random place), so that a stranger inventing keys makes every insert
// cost a little, not a scan of the shard.
func (sh *bucketShard[K]) evict(now time.Time) {
	var victim K
	fullest, n := -1.0, 0
	for k, b := range sh.m {
		fill := min(1, (b.tokens+now.Sub(b.last).Seconds()*b.perSecond)/b.burst)
		if fill > fullest {
			victim, fullest = k, fill
		}
		if n++; fill >= 1 || n == evictSample {
			break
		}
	}
	delete(sh.m, victim)
}

// evictSample is how many buckets evict looks at.
const evictSample = 8

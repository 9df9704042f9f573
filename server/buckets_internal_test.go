package server

import (
	"fmt"
	"testing"
	"time"
)

// TestBucketsBounded: keys invented by the hundred thousand never grow the
// buckets past their bound, and the buckets that carry information (not
// full) outlive the full ones that make room for new keys.
func TestBucketsBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	bs := newBuckets[string](func() time.Time { return now })
	// The failing party spends its whole burst of 3.
	for range 3 {
		bs.take("attacker", 1, 3)
	}
	if ok, _ := bs.take("attacker", 1, 3); ok {
		t.Fatal("the spent bucket let a fourth failure through")
	}
	// Each invented key takes one of its 100 tokens: its bucket stays
	// nearly full, and after a second of refill, full.
	for i := range 4 * maxBucketKeys {
		if i%maxBucketKeys == 0 {
			now = now.Add(time.Millisecond)
		}
		bs.take(fmt.Sprintf("invented-%d", i), 100, 100)
	}
	n := 0
	for i := range bs.shards {
		n += len(bs.shards[i].m)
	}
	if n > maxBucketKeys {
		t.Errorf("%d buckets, want at most %d", n, maxBucketKeys)
	}
	if ok, _ := bs.take("attacker", 1, 3); ok {
		t.Error("the spent bucket was evicted for invented keys: its failures are forgotten")
	}
}

package resource

import (
	"fmt"
	"testing"
	"time"
)

// TestReplayCacheBounded: however many proofs arrive within the window,
// the cache holds at most its maximum, and still refuses every replay.
func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(100)
	now := time.Unix(1_800_000_000, 0)
	window := 5 * time.Minute
	for i := range 1000 {
		iat := now.Add(time.Duration(i) * time.Millisecond)
		if !c.add(fmt.Sprint(i), iat, iat, window) {
			t.Fatalf("fresh proof %d refused", i)
		}
		if len(c.seen) > 100 || len(c.order) > 100 {
			t.Fatalf("after %d proofs the cache holds %d", i+1, len(c.seen))
		}
	}
	end := now.Add(time.Second)
	for i := range 1000 {
		if c.add(fmt.Sprint(i), now.Add(time.Duration(i)*time.Millisecond), end, window) {
			t.Errorf("replay of proof %d accepted", i)
		}
	}
}

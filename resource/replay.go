package resource

import (
	"sync"
	"time"
)

// replayCache remembers the DPoP proofs accepted (RFC 9449 §11.1) for as
// long as they could be replayed, in bounded memory. When it is full it
// forgets the oldest entry and raises a floor: a proof issued no later
// than a forgotten one is refused, since it might be that one. So memory is
// bounded and still no replay gets through; a flood costs honest clients
// only proofs older than the flood.
type replayCache struct {
	max int

	mu    sync.Mutex
	seen  map[string]time.Time // key → the proof's iat
	order []entry              // in the order added; a ring would do, a slice is simpler
	floor time.Time
}

type entry struct {
	key string
	iat time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

// add records the proof key issued at iat, and reports false if it was
// seen before or may have been. window is how long after iat a proof is
// still accepted.
func (c *replayCache) add(key string, iat, now time.Time, window time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget what can no longer be replayed: Verify refuses it as stale.
	for len(c.order) > 0 && now.Sub(c.order[0].iat) > window {
		c.forget()
	}
	if _, ok := c.seen[key]; ok {
		return false
	}
	if !iat.After(c.floor) {
		return false
	}
	for len(c.order) >= c.max {
		e := c.order[0]
		c.forget()
		if e.iat.After(c.floor) {
			c.floor = e.iat
		}
	}
	c.seen[key] = iat
	c.order = append(c.order, entry{key, iat})
	return true
}

func (c *replayCache) forget() {
	delete(c.seen, c.order[0].key)
	c.order[0] = entry{}
	c.order = c.order[1:]
}

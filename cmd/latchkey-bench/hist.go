package main

import (
	"math"
	"math/bits"
	"time"
)

// A histogram of latencies in nanoseconds, log-linear like HdrHistogram:
// values below 2^histSubBits are counted exactly; above, each power of two
// is split into 2^(histSubBits-1) equal buckets, so a reported quantile is
// within 1/2^(histSubBits-1) (0.4%) of the true value at any scale, and
// recording costs a few shifts and one increment with no allocation. Each
// load worker owns its histograms; they are merged once at the end.
const (
	histSubBits = 9
	histHalf    = 1 << (histSubBits - 1)
	// histMaxBits caps recorded values at 2^40 ns (18 minutes); anything
	// longer lands in the last bucket, and the exact maximum is kept aside.
	histMaxBits = 40
	histBuckets = (histMaxBits - histSubBits + 2) * histHalf
)

type hist struct {
	counts   []uint64
	n        uint64
	sum, max int64
}

func newHist() *hist { return &hist{counts: make([]uint64, histBuckets)} }

func histIndex(v int64) int {
	if v < 1<<histSubBits {
		return int(max(v, 0))
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	e := bits.Len64(uint64(v)) - histSubBits
	return e*histHalf + int(v>>e)
}

// histValue is the middle of bucket i, the value reported for it.
func histValue(i int) int64 {
	if i < 1<<histSubBits {
		return int64(i)
	}
	e := i>>(histSubBits-1) - 1
	m := int64(i - e*histHalf)
	return m<<e + (int64(1)<<e-1)/2
}

func (h *hist) record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the smallest recorded value v such that a fraction q
// of all values is at most v, to the histogram's precision.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.n))
}

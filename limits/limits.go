// Package limits rate-limits subscription requests for rostergate with token buckets, per key (a contact or a domain).
//
// The package is pure: it reads no clock (callers pass the time of each
// event) and does no I/O.
package limits

import (
	"container/heap"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is N events per Per, with a burst of N: a full bucket holds N tokens
// and regains one every Per/N. The zero Rate is unlimited.
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate parses a rate written N/DURATION, such as "5/1m", "100/1h" or
// "10/30s" (DURATION in time.ParseDuration syntax). "" is the zero Rate,
// unlimited.
func ParseRate(s string) (Rate, error) {
	if s == "" {
		return Rate{}, nil
	}
	ns, ds, ok := strings.Cut(s, "/")
	n, nerr := strconv.Atoi(ns)
	per, derr := time.ParseDuration(ds)
	if !ok || nerr != nil || derr != nil {
		return Rate{}, fmt.Errorf("limits: bad rate %q: want N/DURATION like \"5/1m\"", s)
	}
	r := Rate{N: n, Per: per}
	if err := r.check(); err != nil {
		return Rate{}, fmt.Errorf("limits: bad rate %q: %w", s, err)
	}
	return r, nil
}

// check reports what is wrong with a non-zero rate.
func (r Rate) check() error {
	switch {
	case r.N < 1:
		return errors.New("the number of events must be at least 1")
	case r.Per <= 0:
		return errors.New("the duration must be positive")
	case int64(r.N) > int64(r.Per):
		return errors.New("more than one per nanosecond")
	}
	return nil
}

// IsZero reports whether r is the zero Rate, which is unlimited.
func (r Rate) IsZero() bool { return r == Rate{} }

// String returns r as ParseRate reads it, e.g. "5/1m" or "10/1h30m", or
// "unlimited" for the zero Rate.
func (r Rate) String() string {
	if r.IsZero() {
		return "unlimited"
	}
	d := r.Per.String() // "1m0s", "1h0m0s", "1h30m0s", "30s", "1.5s", "500ms"
	if strings.HasSuffix(d, "m0s") {
		d = strings.TrimSuffix(d, "0s")
	}
	if strings.HasSuffix(d, "h0m") {
		d = strings.TrimSuffix(d, "0m")
	}
	return strconv.Itoa(r.N) + "/" + d
}

// Buckets are token buckets of one Rate, one per key, created full on a
// key's first event. Memory is bounded by maxKeys buckets: to make room, a
// bucket that is full again (its key idle for long enough, so forgetting it
// changes nothing) is evicted first, else the least recently used one, whose
// key then starts again with a full bucket.
//
// Buckets are safe for concurrent use.
type Buckets struct {
	rate     Rate
	interval time.Duration // Per/N, rounded down: the time one token takes to come back
	burst    time.Duration // N*interval (≤ Per): how far ahead of now fullAt may be
	maxKeys  int

	mu      sync.Mutex
	started bool
	epoch   time.Time // times are kept as offsets from the first event's
	keys    map[string]*bucket
	full    fullHeap // every bucket, by the time it is full again
	lru     bucket   // sentinel of a ring: lru.next is the most recently used
}

// bucket uses the generic cell rate algorithm: instead of a count of tokens
// it keeps the time at which it is full again, which moves one interval
// later per token taken and is never more than burst ahead of now; at time
// t it holds (burst - (fullAt - t)) / interval tokens.
type bucket struct {
	key        string
	fullAt     time.Duration // since epoch; at or before now, the bucket is full
	index      int           // in Buckets.full
	prev, next *bucket       // in the LRU ring
}

// NewBuckets returns empty buckets for rate r, holding at most maxKeys keys.
// With the zero Rate every event is allowed and nothing is stored. It panics
// if r is neither zero nor valid (N ≥ 1, Per > 0), or if r is not zero and
// maxKeys < 1.
func NewBuckets(r Rate, maxKeys int) *Buckets {
	b := &Buckets{rate: r, maxKeys: maxKeys}
	b.lru.prev, b.lru.next = &b.lru, &b.lru
	if r.IsZero() {
		return b
	}
	if err := r.check(); err != nil {
		panic(fmt.Sprintf("limits: NewBuckets: rate %d/%s: %v", r.N, r.Per, err))
	}
	if maxKeys < 1 {
		panic(fmt.Sprintf("limits: NewBuckets: maxKeys %d < 1", maxKeys))
	}
	b.interval = r.Per / time.Duration(r.N)
	b.burst = b.interval * time.Duration(r.N)
	b.keys = make(map[string]*bucket)
	return b
}

// Rate returns the rate the buckets were made for.
func (b *Buckets) Rate() Rate { return b.rate }

// Allow takes one token from key's bucket at time now and reports whether
// there was one. Times should not go backwards; if they do, a bucket is
// never emptier than empty.
func (b *Buckets) Allow(key string, now time.Time) bool {
	if b.rate.IsZero() {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.started {
		b.started, b.epoch = true, now
	}
	t := now.Sub(b.epoch)
	k, ok := b.keys[key]
	if !ok {
		if len(b.keys) >= b.maxKeys {
			b.evict(t)
		}
		k = &bucket{key: key, fullAt: t}
		b.keys[key] = k
		heap.Push(&b.full, k)
	} else {
		b.unlink(k)
	}
	b.pushFront(k)

	fullAt := max(k.fullAt, t)
	if fullAt > t+b.burst { // time went backwards: no emptier than empty
		fullAt = t + b.burst
	}
	allowed := fullAt+b.interval-t <= b.burst
	if allowed {
		fullAt += b.interval
	}
	if fullAt != k.fullAt {
		k.fullAt = fullAt
		heap.Fix(&b.full, k.index)
	}
	return allowed
}

// evict removes one bucket: the one full again soonest if it is full at t,
// else the least recently used. b.mu is held and there is a bucket.
func (b *Buckets) evict(t time.Duration) {
	k := b.full[0]
	if k.fullAt > t {
		k = b.lru.prev
	}
	heap.Remove(&b.full, k.index)
	b.unlink(k)
	delete(b.keys, k.key)
}

func (b *Buckets) pushFront(k *bucket) {
	k.prev, k.next = &b.lru, b.lru.next
	k.prev.next, k.next.prev = k, k
}

func (b *Buckets) unlink(k *bucket) {
	k.prev.next, k.next.prev = k.next, k.prev
	k.prev, k.next = nil, nil
}

// Len returns the number of keys held.
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.keys)
}

// fullHeap is a min-heap of buckets by fullAt (container/heap).
type fullHeap []*bucket

func (h fullHeap) Len() int           { return len(h) }
func (h fullHeap) Less(i, j int) bool { return h[i].fullAt < h[j].fullAt }
func (h fullHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *fullHeap) Push(x any) {
	k := x.(*bucket)
	k.index = len(*h)
	*h = append(*h, k)
}
func (h *fullHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.index = -1
	return k
}

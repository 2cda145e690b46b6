package limits_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"rostergate/limits"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		name, in string
		want     limits.Rate
		str      string
		wantErr  string
	}{
		{name: "per minute", in: "5/1m", want: limits.Rate{N: 5, Per: time.Minute}, str: "5/1m"},
		{name: "per hour", in: "100/1h", want: limits.Rate{N: 100, Per: time.Hour}, str: "100/1h"},
		{name: "per 30s", in: "10/30s", want: limits.Rate{N: 10, Per: 30 * time.Second}, str: "10/30s"},
		{name: "compound duration", in: "3/1h30m", want: limits.Rate{N: 3, Per: 90 * time.Minute}, str: "3/1h30m"},
		{name: "sub-second", in: "1/500ms", want: limits.Rate{N: 1, Per: 500 * time.Millisecond}, str: "1/500ms"},
		{name: "long form", in: "2/1h0m0s", want: limits.Rate{N: 2, Per: time.Hour}, str: "2/1h"},
		{name: "hours and seconds", in: "2/1h0m5s", want: limits.Rate{N: 2, Per: time.Hour + 5*time.Second}, str: "2/1h0m5s"},
		{name: "empty is unlimited", in: "", want: limits.Rate{}, str: "unlimited"},
		{name: "no slash", in: "5m", wantErr: `limits: bad rate "5m": want N/DURATION like "5/1m"`},
		{name: "no unit", in: "5/60", wantErr: `limits: bad rate "5/60": want N/DURATION like "5/1m"`},
		{name: "not a number", in: "five/1m", wantErr: `limits: bad rate "five/1m": want N/DURATION like "5/1m"`},
		{name: "two slashes", in: "5/1m/2", wantErr: `limits: bad rate "5/1m/2": want N/DURATION like "5/1m"`},
		{name: "spaces", in: " 5/1m", wantErr: `limits: bad rate " 5/1m": want N/DURATION like "5/1m"`},
		{name: "zero N", in: "0/1m", wantErr: `limits: bad rate "0/1m": the number of events must be at least 1`},
		{name: "negative N", in: "-1/1m", wantErr: `limits: bad rate "-1/1m": the number of events must be at least 1`},
		{name: "zero duration", in: "5/0s", wantErr: `limits: bad rate "5/0s": the duration must be positive`},
		{name: "negative duration", in: "5/-1m", wantErr: `limits: bad rate "5/-1m": the duration must be positive`},
		{name: "faster than a nanosecond", in: "11/10ns", wantErr: `limits: bad rate "11/10ns": more than one per nanosecond`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := limits.ParseRate(tc.in)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ParseRate(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseRate(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Fatalf("String() = %q, want %q", s, tc.str)
			}
			if got.IsZero() != (tc.in == "") {
				t.Fatalf("IsZero() = %v", got.IsZero())
			}
			if !got.IsZero() {
				if again, err := limits.ParseRate(got.String()); err != nil || again != got {
					t.Fatalf("ParseRate(String()) = %v, %v; want %v", again, err, got)
				}
			}
		})
	}
}

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// allowN calls Allow n times at now and returns how many were allowed.
func allowN(b *limits.Buckets, key string, now time.Time, n int) int {
	ok := 0
	for range n {
		if b.Allow(key, now) {
			ok++
		}
	}
	return ok
}

func TestAllow(t *testing.T) {
	type step struct {
		at   time.Duration // since t0
		key  string
		n    int // calls
		want int // allowed
	}
	tests := []struct {
		name  string
		rate  limits.Rate
		steps []step
	}{
		{"burst of N, then nothing", limits.Rate{N: 5, Per: time.Minute}, []step{
			{0, "a", 7, 5},
			{time.Second, "a", 1, 0},
		}},
		{"one token back per Per/N", limits.Rate{N: 5, Per: time.Minute}, []step{
			{0, "a", 5, 5},
			{11 * time.Second, "a", 1, 0},
			{12 * time.Second, "a", 2, 1},
			{24 * time.Second, "a", 1, 1},
			{36 * time.Second, "a", 2, 1},
		}},
		{"partial refill", limits.Rate{N: 5, Per: time.Minute}, []step{
			{0, "a", 5, 5},
			{30 * time.Second, "a", 5, 2}, // 2.5 tokens back
			{36 * time.Second, "a", 1, 1}, // the half token completed, 0.5 spent
		}},
		{"full again after Per", limits.Rate{N: 5, Per: time.Minute}, []step{
			{0, "a", 5, 5},
			{time.Minute, "a", 6, 5},
		}},
		{"idle longer does not grow the burst", limits.Rate{N: 3, Per: time.Minute}, []step{
			{0, "a", 1, 1},
			{time.Hour, "a", 4, 3},
		}},
		{"keys are independent", limits.Rate{N: 2, Per: time.Hour}, []step{
			{0, "a", 3, 2},
			{0, "b", 3, 2},
			{time.Minute, "a", 1, 0},
			{time.Minute, "c", 1, 1},
			{30 * time.Minute, "a", 1, 1},
			{30 * time.Minute, "b", 2, 1},
		}},
		{"one per interval", limits.Rate{N: 1, Per: 10 * time.Second}, []step{
			{0, "a", 2, 1},
			{9 * time.Second, "a", 1, 0},
			{10 * time.Second, "a", 1, 1},
			{15 * time.Second, "a", 1, 0},
		}},
		{"uneven interval: exactly N in a burst", limits.Rate{N: 7, Per: time.Minute}, []step{
			{0, "a", 10, 7},
			{time.Minute, "a", 10, 7},
		}},
		{"clock going backwards", limits.Rate{N: 2, Per: time.Minute}, []step{
			{time.Hour, "a", 2, 2},
			{0, "a", 1, 0},
			{time.Hour + 30*time.Second, "a", 1, 1},
		}},
		{"zero rate always allows", limits.Rate{}, []step{
			{0, "a", 1000, 1000},
			{0, "b", 1000, 1000},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := limits.NewBuckets(tc.rate, 100)
			for i, s := range tc.steps {
				if got := allowN(b, s.key, t0.Add(s.at), s.n); got != s.want {
					t.Fatalf("step %d: %d calls for %q at +%s: %d allowed, want %d", i+1, s.n, s.key, s.at, got, s.want)
				}
			}
		})
	}
}

func TestZeroRateStoresNothing(t *testing.T) {
	b := limits.NewBuckets(limits.Rate{}, 0)
	for i := range 1000 {
		if !b.Allow(strconv.Itoa(i), t0) {
			t.Fatal("the zero rate denied")
		}
	}
	if b.Len() != 0 {
		t.Fatalf("Len() = %d, want 0", b.Len())
	}
}

func TestEvictionBoundsMemory(t *testing.T) {
	const maxKeys = 10_000
	b := limits.NewBuckets(limits.Rate{N: 5, Per: time.Minute}, maxKeys)
	now := t0
	for i := range 1_000_000 {
		if !b.Allow("k"+strconv.Itoa(i), now) {
			t.Fatalf("a new key was denied at %d", i)
		}
		now = now.Add(time.Microsecond)
		if i%100_000 == 0 && b.Len() > maxKeys {
			t.Fatalf("Len() = %d after %d keys", b.Len(), i+1)
		}
	}
	if n := b.Len(); n > maxKeys || n < maxKeys {
		t.Fatalf("Len() = %d, want %d", n, maxKeys)
	}
}

// When full, buckets that are full again go first: they lose nothing. A
// recently used key that is still counting survives a flood of new keys as
// long as idle ones can make room.
func TestEvictionPrefersIdle(t *testing.T) {
	b := limits.NewBuckets(limits.Rate{N: 2, Per: time.Minute}, 3)
	// "busy" is empty; "idle1" and "idle2" take one token and are full again a
	// minute later (30s per token).
	allowN(b, "busy", t0, 2)
	allowN(b, "idle1", t0.Add(time.Second), 1)
	allowN(b, "idle2", t0.Add(2*time.Second), 1)
	// At +40s "busy" is the least recently used but is not full (one token
	// back), and the idle keys are: they go first.
	now := t0.Add(40 * time.Second)
	allowN(b, "new1", now, 1)
	allowN(b, "new2", now, 1)
	if b.Len() != 3 {
		t.Fatalf("Len() = %d", b.Len())
	}
	// "busy" kept its count: one token, not two.
	if got := allowN(b, "busy", now, 2); got != 1 {
		t.Fatalf("busy was forgotten: %d allowed, want 1", got)
	}
	// No bucket is full now: the least recently used ("new1") goes.
	allowN(b, "new3", now, 1)
	if got := allowN(b, "new2", now, 2); got != 1 {
		t.Fatalf("new2 was evicted instead of new1: %d allowed, want 1", got)
	}
	if got := allowN(b, "new1", now, 2); got != 2 {
		t.Fatalf("new1 still counted: %d allowed, want 2 (evicted, fresh bucket)", got)
	}
	if b.Len() != 3 {
		t.Fatalf("Len() = %d", b.Len())
	}
}

// Least recently used is by use, not by creation.
func TestEvictionLRUOrder(t *testing.T) {
	b := limits.NewBuckets(limits.Rate{N: 1, Per: time.Hour}, 2)
	b.Allow("a", t0)
	b.Allow("b", t0.Add(time.Second))
	b.Allow("a", t0.Add(2*time.Second)) // denied, but a use: "b" is now the LRU
	b.Allow("c", t0.Add(3*time.Second))
	if b.Allow("a", t0.Add(4*time.Second)) {
		t.Fatal(`"a" was evicted; want "b", the least recently used`)
	}
	if !b.Allow("b", t0.Add(5*time.Second)) {
		t.Fatal(`"b" kept its bucket`)
	}
}

func TestConcurrent(t *testing.T) {
	b := limits.NewBuckets(limits.Rate{N: 100, Per: time.Hour}, 50)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for i := range 1000 {
				if b.Allow("shared", t0) {
					n++
				}
				b.Allow(fmt.Sprintf("g%d-%d", g, i%100), t0.Add(time.Duration(i)*time.Millisecond))
				_ = b.Len()
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("%d allowed for the shared key, want exactly the burst of 100", allowed)
	}
	if b.Len() > 50 {
		t.Fatalf("Len() = %d > 50", b.Len())
	}
}

func TestNewBucketsPanics(t *testing.T) {
	tests := []struct {
		name    string
		rate    limits.Rate
		maxKeys int
	}{
		{"zero N", limits.Rate{N: 0, Per: time.Minute}, 10},
		{"zero Per", limits.Rate{N: 1}, 10},
		{"negative Per", limits.Rate{N: 1, Per: -time.Second}, 10},
		{"no room", limits.Rate{N: 1, Per: time.Second}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			limits.NewBuckets(tc.rate, tc.maxKeys)
		})
	}
}

func BenchmarkAllow(b *testing.B) {
	for _, keys := range []int{1, 1_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			names := make([]string, min(keys, 100_000))
			for i := range names {
				names[i] = "user" + strconv.Itoa(i) + "@example.com"
			}
			bk := limits.NewBuckets(limits.Rate{N: 5, Per: time.Minute}, 10_000)
			now := t0
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bk.Allow(names[i%len(names)], now)
				now = now.Add(time.Microsecond)
				i++
			}
		})
	}
}

func BenchmarkAllowParallel(b *testing.B) {
	bk := limits.NewBuckets(limits.Rate{N: 5, Per: time.Minute}, 10_000)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			bk.Allow("user"+strconv.Itoa(i%20_000), t0.Add(time.Duration(i)))
			i++
		}
	})
}

func Example() {
	b := limits.NewBuckets(limits.Rate{N: 2, Per: time.Minute}, 10_000)
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, at := range []time.Duration{0, 0, 0, 29 * time.Second, 30 * time.Second} {
		fmt.Printf("+%s: %v\n", at, b.Allow("alice@example.com", now.Add(at)))
	}
	// Output:
	// +0s: true
	// +0s: true
	// +0s: false
	// +29s: false
	// +30s: true
}

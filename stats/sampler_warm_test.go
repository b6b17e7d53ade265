package stats

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func (f *fakeSource) snapshot() (calls int, batches [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, slices.Clone(f.batches)
}

// TestSamplerWarm: queued keys without a fresh reading are read in one
// batch, once, and then served from the cache.
func TestSamplerWarm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		period  time.Duration
		cached  []string      // read by a period pass first
		advance time.Duration // then the clock moves on
		warm    [][]string    // Warm calls
		forget  []string
		want    [][]string // the warm-up's reads
	}{
		{name: "new keys in one batch", warm: [][]string{{"a"}, {"b", "c"}}, want: [][]string{{"a", "b", "c"}}},
		{name: "duplicates read once", warm: [][]string{{"a", "a"}, {"a"}}, want: [][]string{{"a"}}},
		{name: "fresh reading not read again", cached: []string{"a"}, advance: 14 * time.Second,
			warm: [][]string{{"a", "b"}}, want: [][]string{{"b"}}},
		{name: "stale reading read again", cached: []string{"a"}, advance: 16 * time.Second,
			warm: [][]string{{"a"}}, want: [][]string{{"a"}}},
		{name: "all fresh: no read", cached: []string{"a", "b"}, warm: [][]string{{"a", "b"}}},
		{name: "forgotten before the read", warm: [][]string{{"a", "b"}}, forget: []string{"a"}, want: [][]string{{"b"}}},
		{name: "no keys", warm: [][]string{{}}},
		{name: "cache disabled: nothing queued", period: -1, warm: [][]string{{"a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			period := 10 * time.Second
			if tc.period != 0 {
				period = tc.period
			}
			src := &fakeSource{keys: tc.cached, reads: map[string]int{}}
			clk := &fakeClock{t: t0}
			s := NewSampler(period, src.list, src.read, WithClock[int](clk.now))
			if len(tc.cached) > 0 {
				s.SampleAll(ctx)
			}
			calls0, _ := src.snapshot()
			clk.advance(tc.advance)
			for _, keys := range tc.warm {
				s.Warm(keys...)
			}
			for _, k := range tc.forget {
				s.Forget(k)
			}
			s.warmPending(ctx)
			_, batches := src.snapshot()
			if got := batches[calls0:]; !slices.EqualFunc(got, tc.want, slices.Equal) {
				t.Fatalf("warm-up reads %v, want %v", got, tc.want)
			}
			if n := s.pendingLen(); n != 0 {
				t.Errorf("%d keys still queued", n)
			}
			if period <= 0 {
				return
			}
			// Every warmed key is now served from the cache.
			calls1, _ := src.snapshot()
			var keys []string
			for _, w := range tc.warm {
				keys = append(keys, w...)
			}
			keys = slices.DeleteFunc(slices.Compact(slices.Sorted(slices.Values(keys))), func(k string) bool {
				return slices.Contains(tc.forget, k)
			})
			got := s.Get(ctx, keys)
			if calls, _ := src.snapshot(); calls != calls1 || len(got) != len(keys) {
				t.Errorf("Get(%v) after warm-up = %v with %d reads, want no read", keys, got, calls-calls1)
			}
		})
	}
}

// TestSamplerWarmQueueBounded: Warm never queues more than maxPending keys.
func TestSamplerWarmQueueBounded(t *testing.T) {
	src := &fakeSource{reads: map[string]int{}}
	s := NewSampler(10*time.Second, src.list, src.read)
	for i := range maxPending + 10 {
		s.Warm(fmt.Sprint(i))
	}
	if n := s.pendingLen(); n != maxPending {
		t.Errorf("queued %d keys, want %d", n, maxPending)
	}
}

// warmGoroutines lists the goroutines running a sampler's warm-up loop.
func warmGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, ").warmLoop(") {
			out = append(out, g)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSamplerWarmInBackground: under Run, warmed keys are read once in the
// background, a burst in one batch, and then served without a read; a
// cancelled Run returns only once its warm-up goroutine has ended, and a read
// it cut short is not kept.
func TestSamplerWarmInBackground(t *testing.T) {
	var block atomic.Bool
	unblock := make(chan struct{})
	inRead := make(chan struct{}, 1)
	src := &fakeSource{reads: map[string]int{}}
	read := func(ctx context.Context, keys []string) map[string]int {
		if block.Load() {
			inRead <- struct{}{}
			<-unblock
		}
		return src.read(ctx, keys)
	}
	s := NewSampler(time.Hour, src.list, read, WithWarmDelay[int](20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "the first period pass", func() bool { c, _ := src.snapshot(); return c == 1 })

	// Starts: one read of all of them, in the background (the batching of
	// separate Warm calls is TestSamplerWarm's).
	s.Warm("c", "a", "b")
	waitFor(t, "the warm-up read", func() bool { c, _ := src.snapshot(); return c >= 2 })
	time.Sleep(50 * time.Millisecond) // a second batch would show by now
	calls, batches := src.snapshot()
	if want := [][]string{{}, {"a", "b", "c"}}; !slices.EqualFunc(batches, want, slices.Equal) {
		t.Fatalf("reads %v, want %v", batches, want)
	}
	if got := s.Get(ctx, []string{"a", "b", "c"}); len(got) != 3 {
		t.Errorf("Get after warm-up = %v", got)
	}
	if c, _ := src.snapshot(); c != calls {
		t.Errorf("Get after warm-up read again")
	}

	// Cancelled while a warm-up read is in progress: Run waits for it.
	block.Store(true)
	s.Warm("d")
	<-inRead
	cancel()
	select {
	case <-done:
		t.Fatal("Run returned while its warm-up goroutine was reading")
	case <-time.After(20 * time.Millisecond):
	}
	close(unblock)
	<-done
	if g := warmGoroutines(); len(g) != 0 {
		t.Fatalf("warm-up goroutines left after Run returned:\n%s", strings.Join(g, "\n\n"))
	}
	if s.Len() != 3 {
		t.Errorf("entries = %d: the cut-short read was kept", s.Len())
	}
	// Warm after Run: queued, never read, no goroutine.
	block.Store(false)
	s.Warm("e")
	if c, _ := src.snapshot(); c != calls+1 {
		t.Errorf("reads = %d, want %d", c, calls+1)
	}
}

// TestSamplerGetDuringPass: while a period pass is reading, a Get for a stale
// key the pass is reading again gets the previous reading (up to maxAge +
// period old) instead of a second read; keys with no reading, or older than
// that, are read on demand. Readings taken on demand during the pass of keys
// it does not list stay until the next pass.
func TestSamplerGetDuringPass(t *testing.T) {
	for _, tc := range []struct {
		name     string
		age      time.Duration // of the previous reading when Get runs
		key      string
		wantRead bool
		want     int
	}{
		{name: "fresh", age: 5 * time.Second, key: "a", want: 1},
		{name: "stale, the pass reads it", age: 16 * time.Second, key: "a", want: 1},
		{name: "too stale even so", age: 26 * time.Second, key: "a", wantRead: true, want: 2},
		{name: "never read", age: 16 * time.Second, key: "new", wantRead: true, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			var block atomic.Bool
			unblock := make(chan struct{})
			passing := make(chan struct{}, 1)
			src := &fakeSource{keys: []string{"a"}, reads: map[string]int{}}
			clk := &fakeClock{t: t0}
			gatedRead := func(ctx context.Context, keys []string) map[string]int {
				if block.CompareAndSwap(true, false) { // the pass's read
					passing <- struct{}{}
					<-unblock
				}
				return src.read(ctx, keys)
			}
			s := NewSampler(10*time.Second, src.list, gatedRead, WithClock[int](clk.now))
			s.SampleAll(ctx)
			clk.advance(tc.age)

			block.Store(true)
			passDone := make(chan struct{})
			go func() { s.SampleAll(ctx); close(passDone) }()
			<-passing // the pass is reading; further reads go through
			calls0, _ := src.snapshot()
			got := s.Get(ctx, []string{tc.key})
			calls1, _ := src.snapshot()
			if read := calls1 > calls0; read != tc.wantRead || got[tc.key] != tc.want {
				t.Errorf("Get = %v, read %v; want %d, read %v", got, read, tc.want, tc.wantRead)
			}
			close(unblock)
			<-passDone
			s.mu.Lock()
			_, kept := s.entries[tc.key]
			s.mu.Unlock()
			if !kept {
				t.Errorf("%s dropped by the pass it was read during", tc.key)
			}
			if tc.key != "a" {
				s.SampleAll(ctx)
				if s.Len() != 1 {
					t.Errorf("entries after the next pass = %d, want 1", s.Len())
				}
			}
		})
	}
}

// BenchmarkSamplerGet500: a stats call's Get of 500 cached readings.
func BenchmarkSamplerGet500(b *testing.B) {
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprintf("container/%064d", i)
	}
	src := &fakeSource{keys: keys, reads: map[string]int{}}
	s := NewSampler(time.Hour, src.list, src.read)
	s.SampleAll(context.Background())
	ctx := context.Background()
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if got := s.Get(ctx, keys); len(got) != 500 {
				b.Fatal(len(got))
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if got := s.Get(ctx, keys); len(got) != 500 {
					b.Fatal(len(got))
				}
			}
		})
	})
	if src.calls != 1 {
		b.Errorf("%d reads, want the one period pass", src.calls)
	}
}

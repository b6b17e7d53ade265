package stats

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeSource counts reads per key and returns "v<n>" readings, n the read count.
type fakeSource struct {
	mu     sync.Mutex
	keys   []string
	absent map[string]bool
	reads  map[string]int
	calls  int
	gate   chan struct{} // if set, read waits on it
	// batches holds the keys of every read, sorted.
	batches [][]string
}

func (f *fakeSource) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys)
}

func (f *fakeSource) read(_ context.Context, keys []string) map[string]int {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.batches = append(f.batches, slices.Sorted(slices.Values(keys)))
	out := map[string]int{}
	for _, k := range keys {
		f.reads[k]++
		if !f.absent[k] {
			out[k] = f.reads[k]
		}
	}
	return out
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSampler(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{keys: []string{"a", "b", "gone"}, absent: map[string]bool{"gone": true}, reads: map[string]int{}}
	clk := &fakeClock{t: t0}
	var seen []string
	s := NewSampler(10*time.Second, src.list, src.read, WithClock[int](clk.now),
		WithOnRead(func(k string, v int) { seen = append(seen, k) }))

	s.SampleAll(ctx)
	if src.calls != 1 || s.Len() != 3 {
		t.Fatalf("after one period: %d reads, %d entries", src.calls, s.Len())
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"a", "b"}) {
		t.Errorf("onRead saw %v", seen)
	}

	// Within the age bound: served from the cache, no read; a key without
	// reading is absent, and not read again either.
	clk.advance(14 * time.Second)
	got := s.Get(ctx, []string{"a", "b", "gone"})
	if src.calls != 1 || got["a"] != 1 || got["b"] != 1 || len(got) != 2 {
		t.Fatalf("cached get = %v after %d reads", got, src.calls)
	}

	// A new key is read on demand, once, then cached.
	got = s.Get(ctx, []string{"a", "new"})
	if src.calls != 2 || got["new"] != 1 || src.reads["a"] != 1 {
		t.Fatalf("on-demand get = %v, reads %v", got, src.reads)
	}
	_ = s.Get(ctx, []string{"new"})
	if src.calls != 2 {
		t.Errorf("second get of new read again")
	}

	// Past the bound (1.5 periods): stale readings are read again.
	clk.advance(2 * time.Second)
	got = s.Get(ctx, []string{"a", "b", "new"})
	if got["a"] != 2 || got["b"] != 2 || got["new"] != 1 || src.calls != 3 {
		t.Fatalf("stale get = %v after %d reads", got, src.calls)
	}

	// Objects the list drops are forgotten at the next period.
	src.mu.Lock()
	src.keys = []string{"a"}
	src.mu.Unlock()
	s.SampleAll(ctx)
	if s.Len() != 1 {
		t.Errorf("entries after the list shrank = %d, want 1", s.Len())
	}
	s.Forget("a")
	if s.Len() != 0 {
		t.Errorf("entries after Forget = %d", s.Len())
	}
}

// TestSamplerConcurrentMissesShareOneRead: callers that miss the same keys
// at once cause one read, not one per caller.
func TestSamplerConcurrentMissesShareOneRead(t *testing.T) {
	src := &fakeSource{reads: map[string]int{}, gate: make(chan struct{})}
	s := NewSampler(10*time.Second, src.list, src.read)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if got := s.Get(context.Background(), []string{"x"}); got["x"] != 1 {
				t.Errorf("got %v", got)
			}
		})
	}
	close(src.gate)
	wg.Wait()
	if src.calls != 1 {
		t.Errorf("%d reads for 8 concurrent callers, want 1", src.calls)
	}
}

func TestSamplerDisabledReadsEveryTime(t *testing.T) {
	src := &fakeSource{reads: map[string]int{}}
	s := NewSampler(0, src.list, src.read)
	for i := 1; i <= 3; i++ {
		if got := s.Get(context.Background(), []string{"x"}); got["x"] != i {
			t.Fatalf("get %d = %v", i, got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Run(ctx) // returns at once
}

func TestSamplerRunStopsAndKeepsReadingsOnCancel(t *testing.T) {
	src := &fakeSource{keys: []string{"a"}, reads: map[string]int{}}
	s := NewSampler(time.Hour, src.list, src.read)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for s.Len() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	s.SampleAll(ctx) // cancelled: readings kept
	if s.Len() != 1 {
		t.Errorf("entries = %d", s.Len())
	}
}

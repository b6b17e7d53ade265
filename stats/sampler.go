package stats

import (
	"context"
	"sync"
	"time"
)

// Sampler keeps the latest reading of every object it watches, refreshed on
// its own period as cadvisor's housekeeping does, so that the stats RPCs and
// the metrics answer from memory: one read per object per period whatever
// the number of callers. A reading that is missing or older than the age
// bound is taken on demand; concurrent callers that miss the same objects
// share one read. Objects the list no longer names are dropped at the next
// period. It is safe for concurrent use.
type Sampler[V any] struct {
	period time.Duration
	maxAge time.Duration
	now    func() time.Time
	// list names the objects to sample each period.
	list func() []string
	// read takes readings of keys; a key absent from the result has none
	// (e.g. its task is gone), which is remembered like a reading.
	read func(ctx context.Context, keys []string) map[string]V
	// onRead sees every new reading (e.g. to feed the CPU rate collector).
	onRead func(key string, v V)

	mu      sync.Mutex
	entries map[string]reading[V]
	// refresh serialises on-demand reads, so that callers missing the same
	// keys read them once.
	refresh sync.Mutex
}

type reading[V any] struct {
	v  V
	ok bool // false: the object had no reading
	at time.Time
}

// SamplerOpt configures a Sampler.
type SamplerOpt[V any] func(*Sampler[V])

// WithMaxAge bounds the age of a reading served from the cache (default:
// one and a half periods, so that a caller between two periods never reads).
func WithMaxAge[V any](d time.Duration) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.maxAge = d }
}

// WithClock sets the clock (tests).
func WithClock[V any](now func() time.Time) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.now = now }
}

// WithOnRead calls f with every new reading, outside the sampler's locks.
func WithOnRead[V any](f func(key string, v V)) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.onRead = f }
}

// NewSampler returns a sampler of the objects list names, read by read
// every period. A period <= 0 disables the cache: every Get reads.
func NewSampler[V any](period time.Duration, list func() []string, read func(ctx context.Context, keys []string) map[string]V, opts ...SamplerOpt[V]) *Sampler[V] {
	s := &Sampler[V]{
		period:  period,
		maxAge:  period + period/2,
		now:     time.Now,
		list:    list,
		read:    read,
		entries: map[string]reading[V]{},
	}
	for _, o := range opts {
		o(s)
	}
	if period <= 0 {
		s.maxAge = 0
	}
	return s
}

// Run samples every period until ctx is done; with caching disabled it
// only waits for ctx.
func (s *Sampler[V]) Run(ctx context.Context) {
	if s.period <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(s.period)
	defer t.Stop()
	for {
		s.SampleAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SampleAll reads every listed object now and drops the others.
func (s *Sampler[V]) SampleAll(ctx context.Context) {
	keys := s.list()
	got := s.read(ctx, keys)
	if ctx.Err() != nil {
		return // cut short: keep the previous readings
	}
	at := s.now()
	next := make(map[string]reading[V], len(keys))
	for _, k := range keys {
		v, ok := got[k]
		next[k] = reading[V]{v: v, ok: ok, at: at}
	}
	s.mu.Lock()
	s.entries = next
	s.mu.Unlock()
	s.notify(got)
}

// Get returns the readings of keys that are no older than the age bound,
// reading the missing and stale ones now. Keys without a reading are absent.
func (s *Sampler[V]) Get(ctx context.Context, keys []string) map[string]V {
	out := make(map[string]V, len(keys))
	if s.maxAge <= 0 {
		got := s.read(ctx, keys)
		s.notify(got)
		return got
	}
	missing := s.fromCache(keys, out)
	if len(missing) == 0 {
		return out
	}
	s.refresh.Lock()
	defer s.refresh.Unlock()
	// Another caller may have read them while this one waited.
	if missing = s.fromCache(missing, out); len(missing) == 0 {
		return out
	}
	got := s.read(ctx, missing)
	at := s.now()
	s.mu.Lock()
	for _, k := range missing {
		v, ok := got[k]
		s.entries[k] = reading[V]{v: v, ok: ok, at: at}
		if ok {
			out[k] = v
		}
	}
	s.mu.Unlock()
	s.notify(got)
	return out
}

// fromCache puts the fresh readings of keys into out and returns the keys
// that have none.
func (s *Sampler[V]) fromCache(keys []string, out map[string]V) (missing []string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		r, ok := s.entries[k]
		if !ok || now.Sub(r.at) > s.maxAge {
			missing = append(missing, k)
			continue
		}
		if r.ok {
			out[k] = r.v
		}
	}
	return missing
}

// Forget drops the reading of key (e.g. a removed container).
func (s *Sampler[V]) Forget(key string) {
	s.mu.Lock()
	delete(s.entries, key)
	s.mu.Unlock()
}

// Len is the number of objects with a cached reading (or none).
func (s *Sampler[V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *Sampler[V]) notify(got map[string]V) {
	if s.onRead == nil {
		return
	}
	for k, v := range got {
		s.onRead(k, v)
	}
}

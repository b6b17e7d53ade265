package stats

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Sampler keeps the latest reading of every object it watches, refreshed on
// its own period as cadvisor's housekeeping does, so that the stats RPCs and
// the metrics answer from memory: one read per object per period whatever
// the number of callers. It is safe for concurrent use.
//
// Where a Get's answer comes from:
//   - a reading no older than the age bound (maxAge) is served from the cache;
//   - a reading past the bound whose object the period pass in progress is
//     reading again is still served, up to maxAge+period old, rather than read
//     twice (a pass that takes longer than that no longer holds callers back);
//   - any other key (never read, forgotten, or stale with no pass coming) is
//     read on demand; concurrent callers that miss the same keys, and the
//     warm-up below, share one read.
//
// Warm queues keys of objects that have just appeared (a container that
// started, a pod that became ready): the goroutine Run starts reads the keys
// queued within warm delay of each other in one batch, in the background, so
// that the first Get after a burst of starts answers from the cache instead of
// reading every new object in the caller's path. Keys already holding a fresh
// reading are not read again.
//
// Objects the list no longer names are dropped at the next period (readings
// taken on demand or by the warm-up while that period's pass ran are kept
// until the one after).
type Sampler[V any] struct {
	period    time.Duration
	maxAge    time.Duration
	warmDelay time.Duration
	now       func() time.Time
	// list names the objects to sample each period.
	list func() []string
	// read takes readings of keys; a key absent from the result has none
	// (e.g. its task is gone), which is remembered like a reading.
	read func(ctx context.Context, keys []string) map[string]V
	// onRead sees every new reading (e.g. to feed the CPU rate collector).
	onRead func(key string, v V)

	mu      sync.Mutex
	entries map[string]reading[V]
	// gen counts the writes of readings, so that a period pass can tell
	// which readings were taken while it ran.
	gen uint64
	// passing holds the keys of the period pass in progress (nil between
	// passes).
	passing map[string]bool
	// pending holds the keys Warm queued, not yet read.
	pending map[string]struct{}

	// warmc wakes the warm-up goroutine (capacity 1: wake-ups coalesce).
	warmc chan struct{}
	// refresh serialises on-demand and warm-up reads, so that callers
	// missing the same keys read them once.
	refresh sync.Mutex
	// pass serialises period passes.
	pass sync.Mutex
}

type reading[V any] struct {
	v   V
	ok  bool // false: the object had no reading
	at  time.Time
	gen uint64
}

// maxPending bounds the warm-up queue: keys beyond it are not queued (they
// are read by the next period pass, or on demand).
const maxPending = 8192

// DefaultWarmDelay is how long the warm-up waits after a Warm for more keys
// to read in the same batch.
const DefaultWarmDelay = 100 * time.Millisecond

// SamplerOpt configures a Sampler.
type SamplerOpt[V any] func(*Sampler[V])

// WithMaxAge bounds the age of a reading served from the cache (default:
// one and a half periods, so that a caller between two periods never reads).
func WithMaxAge[V any](d time.Duration) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.maxAge = d }
}

// WithClock sets the clock of the readings' ages (tests). The warm delay
// runs on the real clock.
func WithClock[V any](now func() time.Time) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.now = now }
}

// WithOnRead calls f with every new reading, outside the sampler's locks.
func WithOnRead[V any](f func(key string, v V)) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.onRead = f }
}

// WithWarmDelay sets how long the warm-up gathers queued keys before it
// reads them in one batch (default DefaultWarmDelay; 0 reads at once).
func WithWarmDelay[V any](d time.Duration) SamplerOpt[V] {
	return func(s *Sampler[V]) { s.warmDelay = d }
}

// NewSampler returns a sampler of the objects list names, read by read
// every period. A period <= 0 disables the cache: every Get reads, and Warm
// does nothing.
func NewSampler[V any](period time.Duration, list func() []string, read func(ctx context.Context, keys []string) map[string]V, opts ...SamplerOpt[V]) *Sampler[V] {
	s := &Sampler[V]{
		period:    period,
		maxAge:    period + period/2,
		warmDelay: DefaultWarmDelay,
		now:       time.Now,
		list:      list,
		read:      read,
		entries:   map[string]reading[V]{},
		pending:   map[string]struct{}{},
		warmc:     make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	if period <= 0 {
		s.maxAge = 0
	}
	return s
}

// Run samples every period, and reads the keys Warm queues, until ctx is
// done; it returns once its warm-up goroutine has ended. With caching
// disabled it only waits for ctx.
func (s *Sampler[V]) Run(ctx context.Context) {
	if s.period <= 0 {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.warmLoop(ctx) })
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
	s.pass.Lock()
	defer s.pass.Unlock()
	keys := s.list()
	listed := make(map[string]bool, len(keys))
	for _, k := range keys {
		listed[k] = true
	}
	s.mu.Lock()
	s.passing = listed
	start := s.gen
	s.mu.Unlock()

	got := s.read(ctx, keys)

	s.mu.Lock()
	s.passing = nil
	if ctx.Err() != nil {
		s.mu.Unlock()
		return // cut short: keep the previous readings
	}
	at := s.now()
	s.gen++
	next := make(map[string]reading[V], len(keys))
	for _, k := range keys {
		v, ok := got[k]
		next[k] = reading[V]{v: v, ok: ok, at: at, gen: s.gen}
	}
	// Readings of objects the list did not name yet, taken while the pass
	// ran (e.g. a container that started meanwhile), stay.
	for k, r := range s.entries {
		if !listed[k] && r.gen > start {
			next[k] = r
		}
	}
	s.entries = next
	s.mu.Unlock()
	s.notify(got)
}

// Get returns the cached readings of keys (see Sampler for their age),
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
	s.store(missing, got)
	for _, k := range missing {
		if v, ok := got[k]; ok {
			out[k] = v
		}
	}
	s.notify(got)
	return out
}

// Warm queues keys (objects that just appeared) for a background read: Run's
// warm-up goroutine reads the queued keys that have no fresh reading in one
// batch, at most warm delay later. It does not block.
func (s *Sampler[V]) Warm(keys ...string) {
	if s.maxAge <= 0 || len(keys) == 0 {
		return
	}
	s.mu.Lock()
	for _, k := range keys {
		if len(s.pending) >= maxPending {
			break
		}
		s.pending[k] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.warmc <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// warmLoop reads the keys Warm queues until ctx is done.
func (s *Sampler[V]) warmLoop(ctx context.Context) {
	var t *time.Timer
	if s.warmDelay > 0 {
		t = time.NewTimer(s.warmDelay)
		t.Stop()
		defer t.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.warmc:
		}
		if t != nil { // let a burst of starts gather into one read
			t.Reset(s.warmDelay)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		s.warmPending(ctx)
	}
}

// warmPending reads the queued keys that have no fresh reading, in one read.
func (s *Sampler[V]) warmPending(ctx context.Context) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.pending))
	for k := range s.pending {
		keys = append(keys, k)
	}
	clear(s.pending)
	s.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	slices.Sort(keys)
	s.refresh.Lock()
	defer s.refresh.Unlock()
	if keys = s.fromCache(keys, nil); len(keys) == 0 {
		return
	}
	got := s.read(ctx, keys)
	if ctx.Err() != nil {
		return // cut short: the readings may be partial
	}
	s.store(keys, got)
	s.notify(got)
}

// store records the readings got of keys (absent: no reading), taken now.
func (s *Sampler[V]) store(keys []string, got map[string]V) {
	at := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for _, k := range keys {
		v, ok := got[k]
		s.entries[k] = reading[V]{v: v, ok: ok, at: at, gen: s.gen}
	}
}

// fromCache puts the servable readings of keys into out (if not nil) and
// returns the keys that have none.
func (s *Sampler[V]) fromCache(keys []string, out map[string]V) (missing []string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		r, ok := s.entries[k]
		if !ok {
			missing = append(missing, k)
			continue
		}
		if age := now.Sub(r.at); age > s.maxAge && (!s.passing[k] || age > s.maxAge+s.period) {
			missing = append(missing, k)
			continue
		}
		if r.ok && out != nil {
			out[k] = r.v
		}
	}
	return missing
}

// Forget drops the reading of key (e.g. a removed container), and its
// pending warm-up.
func (s *Sampler[V]) Forget(key string) {
	s.mu.Lock()
	delete(s.entries, key)
	delete(s.pending, key)
	s.mu.Unlock()
}

// Len is the number of objects with a cached reading (or none).
func (s *Sampler[V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// pendingLen is the number of keys queued for warm-up (tests).
func (s *Sampler[V]) pendingLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *Sampler[V]) notify(got map[string]V) {
	if s.onRead == nil {
		return
	}
	for k, v := range got {
		s.onRead(k, v)
	}
}

package image

import (
	"sync"
	"time"
)

// ownWriteTTL is how long an own write's event is waited for; an event
// arriving later is handled like anyone else's (a redundant refresh).
const ownWriteTTL = 10 * time.Second

// ownWrites tells the event watcher which containerd image events are the
// echo of this service's own record writes (pull naming, removal), whose
// result the writer puts into the store itself, so that the watcher does not
// read those records again.
//
// Every successful Create / Update / Delete publishes exactly one event for
// its name. A writer brackets each write of a name with begin and the
// returned done(wrote). Events are not matched by content (image events
// carry no target) but counted, erring towards refreshing:
//
//   - an event for a name with a write in flight is not handled by the
//     watcher but deferred to the writer: it may be the write's own echo or
//     someone else's change. When the last write in flight ends, done
//     attributes one deferred event to each successful write and reports
//     whether any is left over; the writer then refreshes the name from
//     containerd (in the background) after putting its own result into the
//     store;
//   - a successful write whose event was not seen while it was in flight
//     leaves one pending echo (for ownWriteTTL): the next event for the name
//     is skipped;
//   - a failed write (which may still have happened) leaves nothing: its
//     event, if any, is refreshed.
//
// A skipped event can thus only be an own write's echo or an event that came
// before that echo (the echo's refresh would have read the newer state, and
// the writer's store update is guarded by the store's version check), unless
// the echo never comes: a broken event stream, after which reset (on
// resubscription, followed by a full resync) clears what is pending, or an
// echo published before the subscription was in place, which the TTL
// bounds.
type ownWrites struct {
	mu    sync.Mutex
	gen   uint64
	names map[string]*ownWrite
	now   func() time.Time // tests
}

type ownWrite struct {
	inflight int
	deferred int         // events seen while inflight > 0
	pending  []time.Time // completion times of writes whose echo is due
}

// begin marks a write of name as in flight. done must be called exactly
// once, with whether the write succeeded; it returns true when events
// deferred meanwhile must be handled by refreshing name (after the writer
// updated the store).
func (o *ownWrites) begin(name string) (done func(wrote bool) (refresh bool)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.names == nil {
		o.names = map[string]*ownWrite{}
	}
	if len(o.names) > 1024 { // echoes that never came
		for n, w := range o.names {
			o.gc(n, w)
		}
	}
	w := o.names[name]
	if w == nil {
		w = &ownWrite{}
		o.names[name] = w
	}
	w.inflight++
	gen := o.gen
	var once sync.Once
	return func(wrote bool) (refresh bool) {
		once.Do(func() { refresh = o.end(name, w, gen, wrote) })
		return refresh
	}
}

func (o *ownWrites) end(name string, w *ownWrite, gen uint64, wrote bool) (refresh bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w.inflight--
	if wrote && gen == o.gen {
		if w.deferred > 0 {
			w.deferred--
		} else {
			w.pending = append(w.pending, o.clock())
		}
	}
	if w.inflight == 0 && w.deferred > 0 {
		w.deferred = 0
		refresh = true
	}
	o.gc(name, w)
	return refresh
}

// event reports whether the watcher should leave an event for name alone:
// it is deferred to a writer in flight or is the echo of a finished write.
func (o *ownWrites) event(name string) (skip bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := o.names[name]
	if w == nil {
		return false
	}
	if w.inflight > 0 {
		w.deferred++
		return true
	}
	defer o.gc(name, w)
	now := o.clock()
	for len(w.pending) > 0 && now.Sub(w.pending[0]) > ownWriteTTL {
		w.pending = w.pending[1:]
	}
	if len(w.pending) == 0 {
		return false
	}
	w.pending = w.pending[1:]
	return true
}

// reset forgets pending echoes (the event stream was re-established and the
// cache is being resynced); writes in flight still end normally but leave
// no pending echo, and events deferred to them are refreshed.
func (o *ownWrites) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	for name, w := range o.names {
		w.pending = nil
		o.gc(name, w)
	}
}

func (o *ownWrites) gc(name string, w *ownWrite) {
	if w.inflight == 0 && w.deferred == 0 {
		now := o.clock()
		for len(w.pending) > 0 && now.Sub(w.pending[0]) > ownWriteTTL {
			w.pending = w.pending[1:]
		}
		if len(w.pending) == 0 {
			delete(o.names, name)
		}
	}
}

func (o *ownWrites) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

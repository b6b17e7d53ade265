package crilog

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// DefaultAttachBufferSize is the default number of bytes of one output stream
// queued for one attached client before the client is considered too slow and
// detached.
const DefaultAttachBufferSize = 1 << 20

// Fanout fans one output stream out to attached writers without ever
// blocking the publisher: each subscriber has its own bounded queue and
// writer goroutine, and one that falls more than the limit behind is detached
// with ErrSlowAttacher.
type Fanout struct {
	limit int

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewFanout returns a fan-out whose subscribers may each queue up to limit
// bytes (<= 0: DefaultAttachBufferSize).
func NewFanout(limit int) *Fanout {
	if limit <= 0 {
		limit = DefaultAttachBufferSize
	}
	return &Fanout{limit: limit, subs: map[*Subscription]struct{}{}}
}

// Subscribe starts delivering the stream to w; w is closed when the
// subscription ends. When the stream has already ended, the subscription
// ends at once.
func (b *Fanout) Subscribe(w io.WriteCloser) *Subscription {
	s := &Subscription{
		fan:   b,
		w:     w,
		limit: b.limit,
		wake:  make(chan struct{}, 1),
		ended: make(chan struct{}),
	}
	b.mu.Lock()
	if b.closed {
		s.finishing = true
	} else {
		b.subs[s] = struct{}{}
	}
	b.mu.Unlock()
	go s.run()
	return s
}

// Subscribers returns the number of subscriptions being fed.
func (b *Fanout) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// remove forgets s without touching it.
func (b *Fanout) remove(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// Publish queues a copy of p for every subscriber. A subscriber whose queue
// would exceed the limit is ended with ErrSlowAttacher and removed.
func (b *Fanout) Publish(p []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) == 0 || len(p) == 0 {
		return
	}
	data := bytes.Clone(p) // shared, read-only for all subscribers
	for s := range b.subs {
		if !s.enqueue(data) {
			delete(b.subs, s)
		}
	}
}

// Close marks the end of the stream: every subscriber writes what it has
// queued, then ends (its writer is closed). Later subscribers end at once.
func (b *Fanout) Close() {
	b.mu.Lock()
	subs := b.subs
	b.subs = map[*Subscription]struct{}{}
	b.closed = true
	b.mu.Unlock()
	for s := range subs {
		s.finish()
	}
}

// Subscription is one writer attached to a Fanout.
type Subscription struct {
	fan   *Fanout
	w     io.WriteCloser
	limit int

	mu        sync.Mutex
	queue     [][]byte
	queued    int
	finishing bool  // no more data will be queued; end once the queue is written
	aborted   bool  // end now, dropping the queue
	err       error // why the subscriber was aborted

	wake    chan struct{} // capacity 1: queue changed or state changed
	ended   chan struct{} // closed when the subscriber is done (aborted or writer exited)
	endOnce sync.Once
}

func (s *Subscription) enqueue(data []byte) bool {
	s.mu.Lock()
	if s.aborted || s.finishing {
		s.mu.Unlock()
		return false
	}
	if s.queued > 0 && s.queued+len(data) > s.limit {
		s.mu.Unlock()
		s.abort(fmt.Errorf("%w (more than %d bytes queued)", ErrSlowAttacher, s.limit))
		return false
	}
	s.queue = append(s.queue, data)
	s.queued += len(data)
	s.mu.Unlock()
	s.signal()
	return true
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Done is closed when the subscription has ended (stream over and queue
// written, writer failed, too slow, or cancelled).
func (s *Subscription) Done() <-chan struct{} { return s.ended }

// Err returns why the subscription ended early (nil for a normal end).
func (s *Subscription) Err() error { return s.result() }

// Cancel ends the subscription now, dropping what is queued, with err as its
// result (unless it has ended with another one already).
func (s *Subscription) Cancel(err error) {
	s.fan.remove(s)
	s.abort(err)
}

// Unsubscribe stops delivering the stream to s: what is queued is still
// written, then the subscription ends.
func (s *Subscription) Unsubscribe() {
	s.fan.remove(s)
	s.finish()
}

// finish ends the subscriber after its queue is written.
func (s *Subscription) finish() {
	s.mu.Lock()
	s.finishing = true
	s.mu.Unlock()
	s.signal()
}

// abort ends the subscriber now with err (the first reason wins). A Write in
// progress is not interrupted; the writer is closed when it returns.
func (s *Subscription) abort(err error) {
	s.mu.Lock()
	if !s.aborted {
		s.aborted = true
		s.err = err
		s.queue = nil
		s.queued = 0
	}
	s.mu.Unlock()
	s.signal()
	s.end()
}

func (s *Subscription) end() { s.endOnce.Do(func() { close(s.ended) }) }

// result returns why the subscriber ended (nil for a normal end).
func (s *Subscription) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Subscription) run() {
	defer func() {
		_ = s.w.Close()
		s.end()
	}()
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && !s.finishing && !s.aborted {
			s.mu.Unlock()
			<-s.wake
			s.mu.Lock()
		}
		if s.aborted || len(s.queue) == 0 {
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue = nil
		s.queued = 0
		s.mu.Unlock()
		for _, d := range batch {
			if _, err := s.w.Write(d); err != nil {
				s.abort(fmt.Errorf("writing to attached stream: %w", err))
				return
			}
			s.mu.Lock()
			aborted := s.aborted
			s.mu.Unlock()
			if aborted {
				return
			}
		}
	}
}

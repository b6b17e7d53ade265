package containerio

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

// broadcaster fans one output stream out to attached writers without ever
// blocking the publisher: each subscriber has its own bounded queue and
// writer goroutine.
type broadcaster struct {
	limit int

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

func newBroadcaster(limit int) *broadcaster {
	if limit <= 0 {
		limit = DefaultAttachBufferSize
	}
	return &broadcaster{limit: limit, subs: map[*subscriber]struct{}{}}
}

// subscribe starts delivering the stream to w. When the stream has already
// ended, the subscriber ends at once (and w is closed).
func (b *broadcaster) subscribe(w io.WriteCloser) *subscriber {
	s := &subscriber{
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

// unsubscribe stops delivering to s; data already queued is still written.
func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
	s.finish()
}

// remove forgets s without touching it.
func (b *broadcaster) remove(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// publish queues a copy of p for every subscriber. A subscriber whose queue
// would exceed the limit is aborted with ErrSlowAttacher and removed.
func (b *broadcaster) publish(p []byte) {
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

// close marks the end of the stream: every subscriber writes what it has
// queued, then ends.
func (b *broadcaster) close() {
	b.mu.Lock()
	subs := b.subs
	b.subs = map[*subscriber]struct{}{}
	b.closed = true
	b.mu.Unlock()
	for s := range subs {
		s.finish()
	}
}

// subscriber is one attached writer of one stream.
type subscriber struct {
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

func (s *subscriber) enqueue(data []byte) bool {
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

func (s *subscriber) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// finish ends the subscriber after its queue is written.
func (s *subscriber) finish() {
	s.mu.Lock()
	s.finishing = true
	s.mu.Unlock()
	s.signal()
}

// abort ends the subscriber now with err (the first reason wins). A Write in
// progress is not interrupted; the writer is closed when it returns.
func (s *subscriber) abort(err error) {
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

func (s *subscriber) end() { s.endOnce.Do(func() { close(s.ended) }) }

// result returns why the subscriber ended (nil for a normal end).
func (s *subscriber) result() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *subscriber) run() {
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

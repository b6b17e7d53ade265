package containerio

import "io"

// Fanout fans one output stream out to attached writers without ever
// blocking the publisher: each subscriber has its own bounded queue and writer
// goroutine, and one that falls more than the limit behind is detached with
// ErrSlowAttacher. It is the attach fan-out of ContainerIO, exported for the
// shim-side log writer (package shimlog).
type Fanout struct{ b *broadcaster }

// NewFanout returns a fan-out whose subscribers may each queue up to limit
// bytes (<= 0: DefaultAttachBufferSize).
func NewFanout(limit int) *Fanout { return &Fanout{b: newBroadcaster(limit)} }

// Publish queues a copy of p for every subscriber.
func (f *Fanout) Publish(p []byte) { f.b.publish(p) }

// Close marks the end of the stream: every subscriber writes what it has
// queued, then ends (its writer is closed). Later subscribers end at once.
func (f *Fanout) Close() { f.b.close() }

// Subscribe starts delivering the stream to w. w is closed when the
// subscription ends.
func (f *Fanout) Subscribe(w io.WriteCloser) *Subscription {
	return &Subscription{s: f.b.subscribe(w), b: f.b}
}

// Subscription is one writer attached to a Fanout.
type Subscription struct {
	s *subscriber
	b *broadcaster
}

// Done is closed when the subscription has ended (stream over and queue
// written, writer failed, too slow, or cancelled).
func (s *Subscription) Done() <-chan struct{} { return s.s.ended }

// Err returns why the subscription ended early (nil for a normal end).
func (s *Subscription) Err() error { return s.s.result() }

// Cancel ends the subscription now, dropping what is queued, with err as its
// result.
func (s *Subscription) Cancel(err error) {
	s.b.remove(s.s)
	s.s.abort(err)
}

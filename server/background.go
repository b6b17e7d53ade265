package server

import (
	"context"
	"sync"
	"time"
)

// background owns the long-running goroutines of the Service: the task
// event monitor, the CNI, CDI and image watchers and the per-exit handlers. Each
// runs with a context that ends when the service stops, and stopping joins
// them. The zero value is ready to use.
type background struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	// stopping is closed when the service begins to stop (Stopping).
	stopping chan struct{}
	// stopped refuses new goroutines once stop has begun.
	stopped bool
	wg      sync.WaitGroup
}

func (b *background) initLocked() {
	if b.ctx == nil {
		b.ctx, b.cancel = context.WithCancel(context.Background())
		b.stopping = make(chan struct{})
	}
}

// context is the context of the background goroutines; it ends at stop.
func (b *background) context() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	return b.ctx
}

// Go runs f in a goroutine that stop joins; it reports false (and does not
// run f) once stop has begun.
func (b *background) Go(f func(ctx context.Context)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	if b.stopped {
		return false
	}
	b.wg.Add(1)
	ctx := b.ctx
	go func() {
		defer b.wg.Done()
		f(ctx)
	}()
	return true
}

// Stopping is closed when the service begins to stop: long-lived RPC
// streams (GetContainerEvents) end on it.
func (b *background) Stopping() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	return b.stopping
}

// beginStop closes Stopping. Goroutines still start and run until stop.
func (b *background) beginStop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.initLocked()
	select {
	case <-b.stopping:
	default:
		close(b.stopping)
	}
}

// stop cancels the goroutines' context, refuses new ones and waits for them
// until deadline. It reports whether they all ended.
func (b *background) stop(deadline time.Time) bool {
	b.beginStop()
	b.mu.Lock()
	b.stopped = true
	b.cancel()
	b.mu.Unlock()
	done := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

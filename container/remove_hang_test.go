package container

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestRegressionRemoveContainerHangsBehindStuckRemove: removals of a
// container were serialised by a plain mutex, so a RemoveContainer stuck in
// containerd (a hung shim or a slow snapshot cleanup) held every later
// RemoveContainer/RemovePodSandbox of it past their deadlines. The lock is
// now given up when the waiting request ends.
func TestRegressionRemoveContainerHangsBehindStuckRemove(t *testing.T) {
	e := newCtlEnv(t)
	c := e.create(t, "app")
	fake := e.ctrd.Live[c.ID]
	if fake == nil {
		t.Fatalf("no containerd container %s", c.ID)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fake.Mu.Lock()
	fake.OnDelete = func(context.Context) {
		once.Do(func() { close(entered); <-release })
	}
	fake.Mu.Unlock()

	first := make(chan error, 1)
	go func() { first <- e.c.Remove(context.Background(), c) }()
	<-entered

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	second := make(chan error, 1)
	go func() { second <- e.c.Remove(ctx, c) }()
	select {
	case err := <-second:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("second Remove behind a stuck one: %v, want a deadline error", err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("second Remove did not end with its request's deadline")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first Remove: %v", err)
	}
	if _, err := e.o.Store.Get(c.ID); err == nil {
		t.Error("the container is still in the store")
	}
}

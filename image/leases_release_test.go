package image

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
)

// flakyLeases fails the first fails deletes as containerd does while it is
// down, then answers final.
type flakyLeases struct {
	leases.Manager
	mu    sync.Mutex
	fails int
	final error
	calls int
}

func (f *flakyLeases) Delete(context.Context, leases.Lease, ...leases.DeleteOpt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return fmt.Errorf("connection refused: %w", errdefs.ErrUnavailable)
	}
	return f.final
}

// TestRegressionTemporaryLeaseLeakedByContainerdKill: a temporary lease
// whose release fails because containerd is down (killed during a pull, or
// during a create: the short chaos campaign of 2026-12-06 13:49 left a
// create's lease and the snapshot it held) is released once containerd is
// back, not left until it expires, and without holding up the caller.
func TestRegressionTemporaryLeaseLeakedByContainerdKill(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fails     int
		final     error
		wantCalls int
	}{
		{name: "released at once", wantCalls: 1},
		{name: "lease already gone", final: errdefs.ErrNotFound, wantCalls: 1},
		{name: "containerd back after three attempts", fails: 3, wantCalls: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lm := &flakyLeases{fails: tc.fails, final: tc.final}
			start := time.Now()
			done := ReleaseTemporaryLease(context.Background(), lm, leases.Lease{ID: "l1"}, "create", "c1")
			if d := time.Since(start); d > releaseRetryEvery {
				t.Errorf("the caller was held up %v", d)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the lease was not released")
			}
			lm.mu.Lock()
			defer lm.mu.Unlock()
			if lm.calls != tc.wantCalls {
				t.Errorf("%d delete calls, want %d", lm.calls, tc.wantCalls)
			}
		})
	}
}

// TestTemporaryLeaseReleaseSurvivesCancelledCaller: a pull whose caller
// gave up still releases its lease.
func TestTemporaryLeaseReleaseSurvivesCancelledCaller(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	lm := &flakyLeases{fails: 1}
	<-ReleaseTemporaryLease(ctx, lm, leases.Lease{ID: "l1"}, "pull", "busybox")
	if lm.calls != 2 {
		t.Errorf("%d delete calls, want 2", lm.calls)
	}
}

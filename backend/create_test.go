package backend

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
// down, then deletes.
type flakyLeases struct {
	leases.Manager
	mu      sync.Mutex
	fails   int
	calls   int
	deleted []string
}

func (f *flakyLeases) Delete(_ context.Context, l leases.Lease, _ ...leases.DeleteOpt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return fmt.Errorf("connection refused: %w", errdefs.ErrUnavailable)
	}
	f.deleted = append(f.deleted, l.ID)
	return nil
}

// TestCreateLeaseReleasedAfterContainerdRestart pins the leak of the short
// chaos campaign of 2026-12-06 13:49: containerd killed during a create left
// the create lease (and the snapshot it held) behind, because its release
// was tried once, while containerd was still down.
func TestCreateLeaseReleasedAfterContainerdRestart(t *testing.T) {
	for _, fails := range []int{0, 1, 3} {
		t.Run(fmt.Sprintf("fails=%d", fails), func(t *testing.T) {
			lm := &flakyLeases{fails: fails}
			start := time.Now()
			done := releaseLease(context.Background(), lm, leases.Lease{ID: "l1"}, "c1")
			if d := time.Since(start); d > leaseRetryEvery {
				t.Errorf("releaseLease blocked its caller for %v", d)
			}
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("the lease was not released")
			}
			lm.mu.Lock()
			defer lm.mu.Unlock()
			if len(lm.deleted) != 1 || lm.deleted[0] != "l1" {
				t.Errorf("deleted %v, want [l1]", lm.deleted)
			}
			if lm.calls != fails+1 {
				t.Errorf("%d delete calls, want %d", lm.calls, fails+1)
			}
		})
	}
}

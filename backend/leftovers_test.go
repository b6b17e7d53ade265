package backend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// TestRegressionRollbackLeftByLongContainerdOutage: a create's rollback
// that finds containerd down for longer than its bound (CleanupTimeout)
// used to log and drop the deletion, leaving the containerd container and
// its snapshot (a pod's also its sandbox record, pause task and shim)
// until the daemon restarted. The step is kept, and done by the retry
// once containerd answers again.
func TestRegressionRollbackLeftByLongContainerdOutage(t *testing.T) {
	left := &Leftovers{Timeout: 300 * time.Millisecond}
	ctr := &refusingContainer{refusals: 1 << 30} // containerd down
	RollbackContainer(context.Background(), ctr, klog.Background(), left)
	if ctr.deletes == 0 {
		t.Fatal("the rollback did not try to delete")
	}
	if left.Len() != 1 {
		t.Fatalf("%d objects left over, want 1", left.Len())
	}
	// Still down: the retry keeps it.
	if n := left.Retry(context.Background()); n != 1 {
		t.Fatalf("%d left after a retry with containerd down, want 1", n)
	}
	ctr.refusals = ctr.deletes // containerd is back
	before := ctr.deletes
	if n := left.Retry(context.Background()); n != 0 {
		t.Fatalf("%d left after containerd came back, want 0", n)
	}
	if ctr.deletes != before+1 {
		t.Errorf("%d deletes by the retry, want 1", ctr.deletes-before)
	}
}

// TestLeftoversKeepStepsInOrder: the steps of one object are retried in
// the order the rollback made them, stopping at the first that fails
// (a pause task before its container), and a later step of an object with
// a kept step is kept without being tried.
func TestLeftoversKeepStepsInOrder(t *testing.T) {
	down := status.Error(codes.Unavailable, "connection refused")
	left := &Leftovers{Timeout: 100 * time.Millisecond}
	var calls []string
	taskUp, ctrTried := false, false
	task := func(context.Context) error {
		calls = append(calls, "task")
		if !taskUp {
			return down
		}
		return nil
	}
	ctr := func(context.Context) error {
		ctrTried = true
		calls = append(calls, "container")
		return nil
	}
	log := klog.Background()
	if left.Rollback(context.Background(), "p1", "deleting pause task", log, task) {
		t.Fatal("a step containerd refused reported done")
	}
	if left.Rollback(context.Background(), "p1", "deleting containerd container", log, ctr) {
		t.Fatal("a step behind a kept one reported done")
	}
	if ctrTried {
		t.Fatal("the container step ran before the task step was done")
	}
	// Another object with nothing kept runs at once.
	if !left.Rollback(context.Background(), "p2", "deleting containerd container", log, func(context.Context) error { return errdefs.ErrNotFound }) {
		t.Error("a step answered NotFound is not done")
	}
	calls = nil
	if n := left.Retry(context.Background()); n != 1 || len(calls) != 1 || calls[0] != "task" {
		t.Fatalf("retry with containerd down: %d left, calls %v; want 1 left, [task]", n, calls)
	}
	taskUp = true
	calls = nil
	if n := left.Retry(context.Background()); n != 0 || len(calls) != 2 || calls[0] != "task" || calls[1] != "container" {
		t.Fatalf("retry with containerd back: %d left, calls %v; want 0 left, [task container]", n, calls)
	}
}

// TestLeftoversGiveUpRefusedStep: a step containerd keeps refusing (not
// for being unreachable) is given up after maxLeftoverFailures retries, and
// the object's next step runs.
func TestLeftoversGiveUpRefusedStep(t *testing.T) {
	left := &Leftovers{Timeout: 100 * time.Millisecond}
	refused := 0
	left.Rollback(context.Background(), "c1", "deleting containerd container", klog.Background(), func(context.Context) error {
		refused++
		return errdefs.ErrFailedPrecondition
	})
	nextRan := false
	left.Rollback(context.Background(), "c1", "next", klog.Background(), func(context.Context) error { nextRan = true; return nil })
	for i := 0; i < maxLeftoverFailures-1; i++ {
		if n := left.Retry(context.Background()); n != 1 {
			t.Fatalf("retry %d: %d left, want 1", i+1, n)
		}
	}
	if nextRan {
		t.Fatal("the next step ran while the first was kept")
	}
	if n := left.Retry(context.Background()); n != 0 {
		t.Fatalf("%d left after %d refusals, want 0 (given up)", n, refused)
	}
	if !nextRan {
		t.Error("the next step did not run once the first was given up")
	}
	if refused != maxLeftoverFailures+1 {
		t.Errorf("%d attempts, want %d (the rollback's and %d retries)", refused, maxLeftoverFailures+1, maxLeftoverFailures)
	}
}

// TestNilLeftovers: without Leftovers a rollback step is tried and logged,
// as before.
func TestNilLeftovers(t *testing.T) {
	var left *Leftovers
	err := errors.New("boom")
	if left.Rollback(context.Background(), "c1", "step", klog.Background(), func(context.Context) error { return err }) {
		t.Error("a failed step reported done")
	}
	if left.Len() != 0 || left.Retry(context.Background()) != 0 {
		t.Error("a nil Leftovers kept something")
	}
}

package image

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// TemporaryLeaseLabel marks the leases the daemon holds only for the length
// of one operation (an image pull, a container create). Its value is the
// operation. A daemon killed during the operation never releases its lease,
// which would pin the content and snapshots it covers until the lease
// expires; RemoveTemporaryLeases deletes those at the next start.
const TemporaryLeaseLabel = "io.cri-containerd.lease.temporary"

// TemporaryLeaseOpts are the options of a temporary lease for op.
func TemporaryLeaseOpts(op string, expiry time.Duration) []leases.Opt {
	return []leases.Opt{
		leases.WithRandomID(),
		leases.WithExpiration(expiry),
		leases.WithLabels(map[string]string{TemporaryLeaseLabel: op}),
	}
}

// leaseReleaseTimeout bounds the release of a temporary lease; releaseRetry
// is the pause between attempts (containerd may be restarting).
const (
	leaseReleaseTimeout = time.Minute
	leaseReleaseRetry   = 500 * time.Millisecond
)

// withTemporaryLease runs fn with a temporary lease for op in its context and
// releases the lease afterwards, even when ctx is cancelled, retrying while
// containerd is unreachable (a containerd killed during fn would otherwise
// keep the lease, and the content and snapshots it pins, for 24 h).
func (s *Service) withTemporaryLease(ctx context.Context, op, ref string, fn func(context.Context) error) error {
	lctx, release, err := s.client.WithLease(ctx, TemporaryLeaseOpts(op, 24*time.Hour)...)
	if err != nil {
		return fmt.Errorf("creating lease for %s of %q: %w", op, ref, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseReleaseTimeout)
		defer cancel()
		if err := retryRelease(dctx, release); err != nil {
			klog.ErrorS(err, "Failed to release a temporary lease; the next start deletes it", "operation", op, "ref", ref)
		}
	}()
	return fn(lctx)
}

// retryRelease calls release until it succeeds (or finds the lease gone) or
// ctx ends.
func retryRelease(ctx context.Context, release func(context.Context) error) error {
	for {
		err := release(ctx)
		if err == nil || errdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(leaseReleaseRetry):
		}
	}
}

// RemoveTemporaryLeases deletes every temporary lease in the namespace of
// ctx. Call it only before the daemon serves: every such lease then belongs
// to an operation of a previous, dead daemon.
func RemoveTemporaryLeases(ctx context.Context, lm leases.Manager) (int, error) {
	all, err := lm.List(ctx, "labels."+strconv.Quote(TemporaryLeaseLabel))
	if err != nil {
		return 0, fmt.Errorf("listing temporary leases: %w", err)
	}
	var errs []error
	n := 0
	for _, l := range all {
		if err := lm.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting lease %s: %w", l.ID, err))
			continue
		}
		n++
		klog.InfoS("Deleted a temporary lease left by a previous run", "lease", l.ID, "operation", l.Labels[TemporaryLeaseLabel], "created", l.CreatedAt)
	}
	return n, errors.Join(errs...)
}

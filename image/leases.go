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

// Releases of temporary leases: one attempt bounded by releaseTimeout, then,
// while containerd is unreachable (killed or restarting), attempts every
// releaseRetryEvery in the background until releaseRetryFor has passed.
// Past that the next start deletes the lease.
const (
	releaseTimeout    = time.Minute
	releaseRetryEvery = 500 * time.Millisecond
	releaseRetryFor   = 10 * time.Minute
)

// withTemporaryLease runs fn with a temporary lease for op in its context and
// releases the lease afterwards (ReleaseTemporaryLease), even when ctx is
// cancelled.
func (s *Service) withTemporaryLease(ctx context.Context, op, ref string, fn func(context.Context) error) error {
	lm := s.client.LeasesService()
	l, err := lm.Create(ctx, TemporaryLeaseOpts(op, 24*time.Hour)...)
	if err != nil {
		return fmt.Errorf("creating lease for %s of %q: %w", op, ref, err)
	}
	defer ReleaseTemporaryLease(ctx, lm, l, op, ref)
	return fn(leases.WithLease(ctx, l.ID))
}

// ReleaseTemporaryLease deletes the temporary lease l of operation op on
// object ref: once now and, when that fails (containerd killed during the
// operation, or restarting), again in the background until it succeeds or
// releaseRetryFor passes. One failed delete would leave the lease, and the
// content and snapshots it holds (a create's snapshot whose container record
// containerd never wrote), until it expires. The caller is not held up by
// the retries; the returned channel is closed when the lease is gone or they
// gave up.
func ReleaseTemporaryLease(ctx context.Context, lm leases.Manager, l leases.Lease, op, ref string) <-chan struct{} {
	done := make(chan struct{})
	ctx = context.WithoutCancel(ctx)
	err := deleteLease(ctx, lm, l)
	if err == nil {
		close(done)
		return done
	}
	klog.V(2).InfoS("Releasing a temporary lease failed; retrying in the background", "operation", op, "ref", ref, "lease", l.ID, "err", err)
	go func() {
		defer close(done)
		bctx, cancel := context.WithTimeout(ctx, releaseRetryFor)
		defer cancel()
		for {
			select {
			case <-bctx.Done():
				klog.ErrorS(bctx.Err(), "Failed to release a temporary lease; the next start deletes it", "operation", op, "ref", ref, "lease", l.ID)
				return
			case <-time.After(releaseRetryEvery):
			}
			if err := deleteLease(bctx, lm, l); err == nil {
				klog.V(2).InfoS("Released a temporary lease after retrying", "operation", op, "ref", ref, "lease", l.ID)
				return
			}
		}
	}()
	return done
}

// deleteLease deletes l; a lease already gone counts as deleted.
func deleteLease(ctx context.Context, lm leases.Manager, l leases.Lease) error {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if err := lm.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
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

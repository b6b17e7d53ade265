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

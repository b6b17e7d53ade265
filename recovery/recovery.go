// Package recovery runs the recovery of the daemon's objects at start-up:
// each object (a containerd container of ours: a sandbox's pause container
// or a workload container) is recovered concurrently with a bound and within
// a deadline, and one that fails or runs out of time is kept in a state
// kubelet acts on instead of being dropped. The sandbox and container
// controllers share it.
package recovery

import (
	"context"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"
)

// DefaultTimeout bounds the recovery of one object when none is configured.
const DefaultTimeout = 30 * time.Second

// Result is what recovering one object produced: Commit publishes it
// (stores, name registry, exit handlers); Abort releases what it holds
// (e.g. re-opened output pipes) when it came after the object's deadline.
// Either may be nil.
type Result struct {
	Commit func()
	Abort  func()
}

// Runner runs recoveries: at most Concurrency at once (at least 1), each
// within Timeout (DefaultTimeout when not positive).
type Runner struct {
	Concurrency int
	Timeout     time.Duration
}

// TimeoutOrDefault is the deadline of one object's recovery.
func (r Runner) TimeoutOrDefault() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

// Each runs f(i) for i in [0, n), at most Concurrency at once, each with a
// context that ends after the timeout; it returns when all have returned.
func (r Runner) Each(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	sem := make(chan struct{}, max(1, r.Concurrency))
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, r.TimeoutOrDefault())
			defer cancel()
			f(octx, i)
		})
	}
	wg.Wait()
}

// All recovers every listed containerd container of one kind with
// recoverOne, concurrently (bounded) and each within the timeout. An object
// whose recovery fails or runs out of time is handed to keep, which
// publishes it in a state kubelet acts on (UNKNOWN/NOTREADY): nothing is
// dropped or destroyed because it could not be read in time. A recovery
// that finishes after its deadline is aborted.
func (r Runner) All(ctx context.Context, kind string, ctrs []containerd.Container,
	recoverOne func(context.Context, containerd.Container) (Result, error),
	keep func(containerd.Container),
) {
	r.Each(ctx, len(ctrs), func(octx context.Context, i int) {
		c := ctrs[i]
		type result struct {
			r   Result
			err error
		}
		ch := make(chan result, 1)
		go func() {
			res, err := recoverOne(octx, c)
			ch <- result{res, err}
		}()
		select {
		case res := <-ch:
			if res.err != nil {
				klog.ErrorS(res.err, "Recovering "+kind+" failed; keeping it for kubelet to stop and remove", "id", c.ID())
				keep(c)
				return
			}
			if res.r.Commit != nil {
				res.r.Commit()
			}
		case <-octx.Done():
			klog.ErrorS(octx.Err(), "Recovering "+kind+" did not finish in time (hung shim?); keeping it for kubelet to stop and remove", "id", c.ID(), "timeout", r.TimeoutOrDefault())
			keep(c)
			go func() {
				if res := <-ch; res.r.Abort != nil {
					res.r.Abort()
				}
			}()
		}
	})
}

// IDs are the IDs of the listed containers.
func IDs(ctrs []containerd.Container) map[string]bool {
	ids := make(map[string]bool, len(ctrs))
	for _, c := range ctrs {
		ids[c.ID()] = true
	}
	return ids
}

// ListedSpec decodes the OCI spec of a listed containerd record (an empty
// spec when it has none or it cannot be decoded).
func ListedSpec(rec containers.Container) *oci.Spec {
	if rec.Spec == nil {
		return &oci.Spec{}
	}
	v, err := typeurl.UnmarshalAny(rec.Spec)
	if err != nil {
		return &oci.Spec{}
	}
	if sp, ok := v.(*oci.Spec); ok {
		return sp
	}
	return &oci.Spec{}
}

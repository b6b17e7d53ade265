package backend

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/image"
)

// Helpers the sandbox and container creates share: making a containerd
// container safely, undoing it, and persisting metadata in its extensions.

// CleanupTimeout bounds each rollback step, which runs on a context that is
// not cancelled with the request's.
const CleanupTimeout = time.Minute

// CleanupCtx returns a context for rollback work that survives the
// request's cancellation, bounded by CleanupTimeout.
func CleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
}

// NewContainer creates a containerd container under a temporary lease of
// ours (labelled, so that the next start deletes it if the daemon is killed
// meanwhile; the client's own lease would pin the snapshot for 24 h). The
// context survives the caller giving up. Once the container exists its
// record holds the snapshot and the lease is no longer needed: the caller
// calls release (e.g. after its reply); on failure the lease is released
// before NewContainer returns.
func NewContainer(ctx context.Context, c Containerd, id string, opts ...containerd.NewContainerOpts) (_ containerd.Container, release func(), _ error) {
	nctx, cancel := CleanupCtx(ctx)
	defer cancel()
	lm := c.LeasesService()
	l, err := lm.Create(nctx, image.TemporaryLeaseOpts("create", time.Hour)...)
	if err != nil {
		return nil, nil, fmt.Errorf("creating a lease for container %s: %w", id, err)
	}
	release = func() { image.ReleaseTemporaryLease(ctx, lm, l, "create", id) }
	ctr, err := c.NewContainer(leases.WithLease(nctx, l.ID), id, opts...)
	if err != nil {
		release()
		return nil, nil, err
	}
	return ctr, release, nil
}

// RollbackContainer deletes a container (and its snapshot) that a failed
// create made, retrying while containerd is unreachable (Leftovers.Rollback);
// a deletion still not done is kept in left for later.
func RollbackContainer(ctx context.Context, ctr containerd.Container, log klog.Logger, left *Leftovers) {
	left.Rollback(ctx, ctr.ID(), "deleting containerd container", log, func(ctx context.Context) error {
		return ctr.Delete(ctx, containerd.WithSnapshotCleanup)
	})
}

// unavailableRetry is the pause between the attempts of
// RetryWhileUnavailable.
const unavailableRetry = 500 * time.Millisecond

// RetryWhileUnavailable calls f until it returns anything but containerd
// being unreachable (killed, or restarting) or ctx ends, and returns f's
// last error. Rollbacks go through it: a create that failed because
// containerd was killed would otherwise leave what it made (the containerd
// container and sandbox records, their snapshot, the pause task's shim) to
// the one attempt made while containerd was still down; the short chaos
// campaign of 2026-12-06 15:53 leaked a pod's so.
func RetryWhileUnavailable(ctx context.Context, f func(context.Context) error) error {
	for {
		err := f(ctx)
		if err == nil || !isUnavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(unavailableRetry):
		}
	}
}

// isUnavailable reports whether err says containerd could not be reached.
func isUnavailable(err error) bool {
	return errdefs.IsUnavailable(err) || status.Code(err) == codes.Unavailable
}

// FindImage finds the containerd image record under any of the names
// (tried in order); the last error when none is known.
func FindImage(ctx context.Context, c Containerd, names ...[]string) (containerd.Image, error) {
	var lastErr error = errdefs.ErrNotFound
	for _, list := range names {
		for _, n := range list {
			img, err := c.GetImage(ctx, n)
			if err == nil {
				return img, nil
			}
			lastErr = err
		}
	}
	return nil, lastErr
}

// SetExtension replaces one extension of container id's record with one
// call (the client's Container.Update reads the whole record first and
// writes it all back).
func SetExtension(ctx context.Context, c Containerd, id, name string, v any) error {
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		return fmt.Errorf("marshalling extension %s: %w", name, err)
	}
	rec := containers.Container{ID: id, Extensions: map[string]typeurl.Any{name: a}}
	if _, err := c.ContainerService().Update(ctx, rec, "extensions."+name); err != nil {
		return fmt.Errorf("updating extension %s of container %s: %w", name, id, FromGRPC(err))
	}
	return nil
}

// UpdateExtension replaces one extension of a containerd container.
func UpdateExtension(name string, v any) containerd.UpdateContainerOpts {
	return func(ctx context.Context, _ *containerd.Client, c *containers.Container) error {
		a, err := typeurl.MarshalAny(v)
		if err != nil {
			return fmt.Errorf("marshalling extension %s: %w", name, err)
		}
		if c.Extensions == nil {
			c.Extensions = map[string]typeurl.Any{}
		}
		c.Extensions[name] = a
		return nil
	}
}

package sandbox

import (
	"context"
	"fmt"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
)

// Remove removes the sandbox's own resources: it stops the sandbox first
// if that is still needed (pause task, network teardown, shm), then drops
// the pod's image volumes, the containerd container with its snapshot and
// metadata record (and any shim containerd forgot), the pod's files and
// directories (netns dir, shm, hosts/resolv.conf), the store entry and the
// name. The caller removes the pod's containers first. Every step is
// idempotent: on a failure the sandbox stays in the store with its name
// held, and the next call finishes the job.
func (c *Controller) Remove(ctx context.Context, sb *Sandbox) error {
	if err := c.Stop(ctx, sb); err != nil {
		return fmt.Errorf("stopping sandbox before removal: %w", err)
	}
	if err := sb.LockStop(ctx); err != nil {
		return err
	}
	defer sb.UnlockStop()
	if _, rt, err := c.o.Config.RuntimeFor(sb.RuntimeHandler); err == nil && sb.imageVolumes.Load() {
		c.o.ImageVolumes.Remove(ctx, sb.ID, c.o.Config.SnapshotterFor(rt))
	}
	if sb.NoTask() {
		if err := backend.DeleteContainer(ctx, c.o.Deps.Containerd, sb.Container); err != nil {
			return fmt.Errorf("deleting containerd container of sandbox %s: %w", sb.ID, err)
		}
	} else if err := sb.Container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting containerd container of sandbox %s: %w", sb.ID, err)
	}
	// A sandbox kept NOTREADY from a RunPodSandbox cut short (recovery's
	// half-made ones, unreadable metadata) may have its record without
	// its metadata saying so: the record is made after the metadata's
	// first write. deleteRecord takes a missing one.
	if sb.GetMetadata().ShimGroup || c.o.ShimGroups {
		if err := c.deleteRecord(ctx, sb.ID); err != nil {
			return err
		}
	}
	if c.shimMayBeLost(sb) {
		c.reapShims(sb.ID, sb.RuntimeHandler)
	}
	if err := c.RemoveFiles(sb.ID); err != nil {
		return err
	}
	if _, err := c.o.Store.Get(sb.ID); err != nil {
		// A concurrent Remove finished first.
		return nil
	}
	sb.init.Close()
	c.o.Store.Delete(sb.ID)
	c.o.Names.ReleaseByID(sb.ID)
	c.emit(sb, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// RemoveFiles unmounts a sandbox's shm and removes its directories (root,
// state, netns). Missing ones are not an error.
func (c *Controller) RemoveFiles(id string) error {
	p := PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, id)
	if err := c.o.Deps.Host.UnmountShm(p.ShmPath()); err != nil {
		return err
	}
	for _, d := range []string{p.RootDir, p.StateDir, p.NetNSDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	return nil
}

// shimMayBeLost reports whether containerd may have lost the pause task
// of sb while its shim runs on: not when this process made the task and
// containerd's event stream has not broken since (Options.ContainerdEpoch).
func (c *Controller) shimMayBeLost(sb *Sandbox) bool {
	return sb.runEpoch == 0 || c.o.ContainerdEpoch == nil || c.o.ContainerdEpoch()+1 != sb.runEpoch
}

// reapShims kills the shims still serving id after its containerd
// container was deleted (Options.ReapShims).
func (c *Controller) reapShims(id, handler string) {
	if c.o.ReapShims != nil {
		c.o.ReapShims(id, handler)
	}
}

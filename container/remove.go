package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Remove force-stops the container if needed and removes it, its snapshot,
// its FIFOs, its directories and its name. It fails with
// errdefs.ErrFailedPrecondition while a start of the container is in
// progress.
func (c *Controller) Remove(ctx context.Context, ctr *Container) error {
	if err := c.Stop(ctx, ctr, 0); err != nil {
		return fmt.Errorf("stopping container %s before removal: %w", ctr.ID, err)
	}
	if err := ctr.LockRemove(ctx); err != nil {
		return err
	}
	defer ctr.UnlockRemove()
	// A start in progress owns the task and the IO: removing under it
	// would delete the task it is starting.
	var starting bool
	ctr.UpdateMemory(func(st *Status) {
		if starting = st.Starting; !starting {
			st.Removing = true
		}
	})
	if starting {
		return fmt.Errorf("container %s is starting: %w", ctr.ID, errdefs.ErrFailedPrecondition)
	}
	// Usually the exit handler already deleted the task; containerd refuses
	// to delete a container that still has one (FailedPrecondition).
	err := ctr.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	if errdefs.IsFailedPrecondition(err) {
		if task, terr := ctr.Container.Task(ctx, nil); terr == nil {
			if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
				ctr.UpdateMemory(func(st *Status) { st.Removing = false })
				return fmt.Errorf("deleting task of %s: %w", ctr.ID, derr)
			}
		}
		err = ctr.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		ctr.UpdateMemory(func(st *Status) { st.Removing = false })
		return fmt.Errorf("deleting containerd container %s: %w", ctr.ID, err)
	}
	// No task can legitimately exist now: kill shims containerd forgot.
	// A container's tasks run in its pod's shim, so one serving its own ID
	// is rare: the scan of /proc runs after the reply.
	if !c.o.Go(func(context.Context) { c.o.ReapShims(ctr) }) {
		c.o.ReapShims(ctr)
	}
	if cio := ctr.IO(); cio != nil {
		cio.Close()
	}
	for _, d := range c.dirs(ctr.ID) {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	c.o.Store.Delete(ctr.ID)
	c.o.Names.ReleaseByID(ctr.ID)
	c.o.OnEvent(ctr, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// dirs are the container's persistent and volatile directories.
func (c *Controller) dirs(id string) []string {
	return []string{filepath.Join(c.o.Config.RootDir, "containers", id), filepath.Join(c.o.Config.StateDir, "containers", id)}
}

// RemoveAll removes every container of a sandbox.
func (c *Controller) RemoveAll(ctx context.Context, sandboxID string) error {
	for _, ctr := range c.o.Store.ListBySandbox(sandboxID) {
		if err := c.Remove(ctx, ctr); err != nil {
			return err
		}
	}
	return nil
}

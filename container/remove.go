package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
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
	if err := c.deleteContainerd(ctx, ctr); err != nil {
		ctr.UpdateMemory(func(st *Status) { st.Removing = false })
		return err
	}
	// No task can legitimately exist now: kill shims containerd forgot.
	// A container's tasks run in its pod's shim, so one serving its own ID
	// is rare: the scan of /proc runs after the reply.
	if !c.o.Go(func(context.Context) { c.o.ReapShims(ctr) }) {
		c.o.ReapShims(ctr)
	}
	ctr.init.Close()
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

// deleteContainerd deletes the containerd container with its snapshot. When
// no task is known to exist (the exit handler deleted it, or the container
// never started) the record and the snapshot go in two concurrent calls;
// otherwise through the client, which finds a task left (containerd
// refuses to delete a container that has one: FailedPrecondition) and
// deletes it first.
func (c *Controller) deleteContainerd(ctx context.Context, ctr *Container) error {
	if ctr.NoTask() {
		return backend.DeleteContainer(ctx, c.o.Deps.Containerd, ctr.Container)
	}
	err := ctr.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	if errdefs.IsFailedPrecondition(err) {
		if task, terr := ctr.Container.Task(ctx, nil); terr == nil {
			if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
				return fmt.Errorf("deleting task of %s: %w", ctr.ID, derr)
			}
		}
		err = ctr.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting containerd container %s: %w", ctr.ID, err)
	}
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

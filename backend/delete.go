package backend

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
)

// DeleteContainer deletes a containerd container the caller knows has no
// task, with its snapshot: the snapshot named by the record the client
// already holds, and the record, removed concurrently. containerd's client
// (Container.Delete with WithSnapshotCleanup) looks the task and the record
// up first: four round trips one after the other where two suffice, and
// those two need not wait for each other (the record does not hold the
// snapshot; containerd's garbage collector removes a snapshot nothing
// references). NotFound from either is success, so a call repeated after a
// partial failure finishes the job. Containerd keeps no task check of its
// own on the record: a caller that is wrong about the task leaves it
// running without its record, so callers that cannot tell use the client's
// Delete.
func DeleteContainer(ctx context.Context, c Containerd, ctr containerd.Container) error {
	rec, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return fmt.Errorf("reading the record of container %s: %w", ctr.ID(), err)
	}
	snapErr := make(chan error, 1)
	if rec.Snapshotter != "" && rec.SnapshotKey != "" {
		go func() {
			err := c.SnapshotService(rec.Snapshotter).Remove(ctx, rec.SnapshotKey)
			if err != nil && !errdefs.IsNotFound(err) {
				err = fmt.Errorf("removing snapshot %s of container %s: %w", rec.SnapshotKey, ctr.ID(), err)
			} else {
				err = nil
			}
			snapErr <- err
		}()
	} else {
		snapErr <- nil
	}
	err = c.ContainerService().Delete(ctx, ctr.ID())
	if err != nil && !errdefs.IsNotFound(err) {
		err = fmt.Errorf("deleting container record %s: %w", ctr.ID(), err)
	} else {
		err = nil
	}
	if serr := <-snapErr; err == nil {
		err = serr
	}
	return err
}

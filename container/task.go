package container

import (
	"context"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/cri-containerd/cri-containerd/backend"
)

// startTaskFunc starts a created task and returns its pid.
type startTaskFunc func(ctx context.Context) (uint32, error)

// createTask creates the task of ctr with the IO creator makes. With the
// rootfs mounts of the create at hand, it is one call to containerd's task
// service; otherwise (a container created before a restart) containerd's
// client makes it, reading the container record and the snapshot's mounts
// first (four round trips more). The IO is started either way; closing it
// on failure is the caller's.
func (c *Controller) createTask(ctx context.Context, ctr *Container, creator cio.Creator) (startTaskFunc, error) {
	if len(ctr.rootfs) == 0 {
		task, err := ctr.Container.NewTask(ctx, creator)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (uint32, error) {
			if err := task.Start(ctx); err != nil {
				return 0, err
			}
			return task.Pid(), nil
		}, nil
	}
	io, err := creator(ctr.ID)
	if err != nil {
		return nil, err
	}
	if err := backend.CreateTask(ctx, c.o.Deps.Containerd, ctr.ID, ctr.rootfs, io.Config()); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (uint32, error) {
		return backend.StartTask(ctx, c.o.Deps.Containerd, ctr.ID)
	}, nil
}

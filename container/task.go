package container

import (
	"context"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
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
	cfg := io.Config()
	req := &tasks.CreateTaskRequest{
		ContainerID: ctr.ID,
		Terminal:    cfg.Terminal,
		Stdin:       cfg.Stdin,
		Stdout:      cfg.Stdout,
		Stderr:      cfg.Stderr,
	}
	for _, m := range ctr.rootfs {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	ts := c.o.Deps.Containerd.TaskService()
	if _, err := ts.Create(ctx, req); err != nil {
		return nil, backend.FromGRPC(err)
	}
	return func(ctx context.Context) (uint32, error) {
		resp, err := ts.Start(ctx, &tasks.StartRequest{ContainerID: ctr.ID})
		if err != nil {
			return 0, backend.FromGRPC(err)
		}
		return resp.GetPid(), nil
	}, nil
}

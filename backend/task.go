package backend

import (
	"context"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"
)

// TaskRunning reports whether the container's task runs, and its exit if
// not. A task that is gone, or in a state that is neither running nor
// stopped, is reported exited with 255 at clock's now; an error asking
// containerd is reported running (a transient error must not change state).
func TaskRunning(ctx context.Context, c containerd.Container, clock Clock) (bool, uint32, time.Time) {
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return false, 255, clock.Now()
		}
		return true, 0, time.Time{}
	}
	st, err := task.Status(ctx)
	if err != nil {
		return true, 0, time.Time{}
	}
	switch st.Status {
	case containerd.Stopped:
		return false, st.ExitStatus, st.ExitTime
	case containerd.Running, containerd.Paused, containerd.Pausing, containerd.Created:
		return true, 0, time.Time{}
	default:
		return false, 255, clock.Now()
	}
}

// TaskStopped reports the exit of a task that containerd has as stopped.
func TaskStopped(ctx context.Context, c containerd.Container) (uint32, time.Time, bool) {
	task, err := c.Task(ctx, nil)
	if err != nil {
		return 0, time.Time{}, false
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != containerd.Stopped {
		return 0, time.Time{}, false
	}
	return st.ExitStatus, st.ExitTime, true
}

// FromGRPC is err from a raw containerd API call (TaskService) as an
// errdefs error; an error that is not a gRPC status is returned as is.
func FromGRPC(err error) error {
	if _, ok := status.FromError(err); !ok {
		return err
	}
	return errgrpc.ToNative(err)
}

// CreateTask creates the task of container id with one call to containerd's
// task service, given the rootfs mounts its create prepared and the paths
// of its stdio (empty: none). containerd's client (Container.NewTask)
// reads the container record and the snapshot's mounts first. The task is
// started with StartTask.
func CreateTask(ctx context.Context, c Containerd, id string, rootfs []mount.Mount, io cio.Config) error {
	req := &tasks.CreateTaskRequest{
		ContainerID: id,
		Terminal:    io.Terminal,
		Stdin:       io.Stdin,
		Stdout:      io.Stdout,
		Stderr:      io.Stderr,
	}
	for _, m := range rootfs {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if _, err := c.TaskService().Create(ctx, req); err != nil {
		return FromGRPC(err)
	}
	return nil
}

// StartTask starts the created task of container id (one call) and
// returns its pid.
func StartTask(ctx context.Context, c Containerd, id string) (uint32, error) {
	resp, err := c.TaskService().Start(ctx, &tasks.StartRequest{ContainerID: id})
	if err != nil {
		return 0, FromGRPC(err)
	}
	return resp.GetPid(), nil
}

// DeleteTask deletes the task of container id with one call, without
// killing anything first: for a task whose processes are known to be gone
// (containerd's client Delete with WithProcessKill kills and waits for
// them). NotFound is returned as is.
func DeleteTask(ctx context.Context, c Containerd, id string) error {
	if _, err := c.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); err != nil {
		return FromGRPC(err)
	}
	return nil
}

package backend

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
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

// StartTaskFunc starts a created task and returns its pid.
type StartTaskFunc func(ctx context.Context) (uint32, error)

// NewTask creates the task of ctr with the IO creator makes and returns
// what starts it. Given the rootfs mounts its create prepared, it is one
// call to containerd's task service (and one to start it); without them (a
// container created before a restart, an ID-remapped snapshot)
// containerd's client makes it, reading the container record and the
// snapshot's mounts first. The IO is started either way; closing it on
// failure is the caller's.
func NewTask(ctx context.Context, c Containerd, ctr containerd.Container, rootfs []mount.Mount, creator cio.Creator) (StartTaskFunc, error) {
	if len(rootfs) == 0 {
		task, err := ctr.NewTask(ctx, creator)
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
	id := ctr.ID()
	io, err := creator(id)
	if err != nil {
		return nil, err
	}
	cfg := io.Config()
	req := &tasks.CreateTaskRequest{
		ContainerID: id,
		Terminal:    cfg.Terminal,
		Stdin:       cfg.Stdin,
		Stdout:      cfg.Stdout,
		Stderr:      cfg.Stderr,
	}
	for _, m := range rootfs {
		req.Rootfs = append(req.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	ts := c.TaskService()
	if _, err := ts.Create(ctx, req); err != nil {
		return nil, FromGRPC(err)
	}
	return func(ctx context.Context) (uint32, error) {
		resp, err := ts.Start(ctx, &tasks.StartRequest{ContainerID: id})
		if err != nil {
			return 0, FromGRPC(err)
		}
		return resp.GetPid(), nil
	}, nil
}

// DeleteExitedTask deletes the task of ctr, whose init exited. When direct
// (the caller knows no process of the container can be left), one call to
// the task service deletes it; when containerd refuses or fails that, or
// when not direct, containerd's client does, with WithProcessKill (a wait,
// a kill of every process of the container and a status read first). A
// task already gone is no error.
func DeleteExitedTask(ctx context.Context, c Containerd, ctr containerd.Container, direct bool) error {
	if direct {
		_, err := c.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: ctr.ID()})
		if err == nil {
			return nil
		}
		if err = FromGRPC(err); errdefs.IsNotFound(err) {
			return nil
		}
		klog.V(2).InfoS("Deleting exited task directly failed; killing what is left first", "id", ctr.ID(), "err", err)
	}
	task, err := ctr.Task(ctx, nil)
	if err == nil {
		_, err = task.Delete(ctx, containerd.WithProcessKill)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// KillTask sends sig to the init process of container id's task (to every
// process of the container with all) in one call: the client's Task.Kill
// needs the task loaded first (a Tasks/Get).
func KillTask(ctx context.Context, c Containerd, id string, sig syscall.Signal, all bool) error {
	_, err := c.TaskService().Kill(ctx, &tasks.KillRequest{ContainerID: id, Signal: uint32(sig), All: all})
	return FromGRPC(err)
}

// WaitTask waits for the exit of container id's task, as the client's
// Task.Wait does, without loading the task first. The channel gets the exit
// status, or one whose Error is set when the wait fails (the task is gone,
// ctx ended).
func WaitTask(ctx context.Context, c Containerd, id string) <-chan containerd.ExitStatus {
	ch := make(chan containerd.ExitStatus, 1)
	go func() {
		r, err := c.TaskService().Wait(ctx, &tasks.WaitRequest{ContainerID: id})
		if err != nil {
			ch <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, fmt.Errorf("waiting for task %s: %w", id, FromGRPC(err)))
			return
		}
		ch <- *containerd.NewExitStatus(r.GetExitStatus(), r.GetExitedAt().AsTime(), nil)
	}()
	return ch
}

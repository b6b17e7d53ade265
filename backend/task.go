package backend

import (
	"context"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
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

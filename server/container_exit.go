package server

import (
	"context"
	"errors"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
)

// errNothingToCheckpoint makes a status update write nothing.
var errNothingToCheckpoint = errors.New("nothing to checkpoint")

// ioDrainTimeout bounds how long an exit waits for the container's output to reach the log.
const ioDrainTimeout = 5 * time.Second

// handleContainerExit records a container's exit: the task is deleted (so
// the shim closes the pipes and the log writer drains), then the exit code
// and reason are checkpointed.
func (s *Service) handleContainerExit(ctx context.Context, id string, pid, code uint32, at time.Time) {
	c, err := s.containers.Get(id)
	if err != nil || c.ID != id {
		return
	}
	if st := c.Status(); st.State() == runtimeapi.ContainerState_CONTAINER_CREATED && !st.Starting {
		// Not started and not being started: the exit of a task that
		// recovery deleted because a killed daemon never started it. The
		// container stays CREATED so that StartContainer can be retried.
		klog.V(2).InfoS("Ignoring the exit of a task never started", "containerID", id, "exitCode", code)
		return
	}
	s.finishContainer(ctx, c, code, at)
}

// finishContainer is handleContainerExit for a container at hand (also one
// recovery has not published yet).
func (s *Service) finishContainer(ctx context.Context, c *container.Container, code uint32, at time.Time) {
	if c.Status().FinishedAt != 0 {
		return
	}
	// The exit code is checkpointed before the task (the only other holder
	// of it) is deleted: a daemon killed from here on finds it at start.
	if err := c.Update(func(st *container.Status) error {
		if st.FinishedAt != 0 || st.PendingExitAt != 0 {
			return errNothingToCheckpoint // recorded meanwhile: write nothing
		}
		st.PendingExitAt, st.PendingExitCode = at.UnixNano(), int32(code)
		return nil
	}); err != nil && !errors.Is(err, errNothingToCheckpoint) {
		klog.ErrorS(err, "Checkpointing pending exit", "containerID", c.ID)
	}
	if task, err := c.Container.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Deleting exited task", "containerID", c.ID)
		}
	}
	if cio := c.IO(); cio != nil {
		cio.Wait(ioDrainTimeout)
	}
	s.recordExit(c, int32(code), at, exitReason(c.Status().OOMKilled, code), "")
}

// exitReason is ContainerStatus.reason of an exit.
func exitReason(oomKilled bool, code uint32) string {
	switch {
	case oomKilled:
		return "OOMKilled"
	case code == 0:
		return "Completed"
	default:
		return "Error"
	}
}

func (s *Service) recordExit(c *container.Container, code int32, at time.Time, reason, message string) {
	recorded := false
	err := c.Update(func(st *container.Status) error {
		if st.FinishedAt != 0 {
			// Recorded by another handler: write nothing (the container
			// may be being removed, its directory with it).
			return errNothingToCheckpoint
		}
		recorded = true
		st.Pid = 0
		st.FinishedAt = at.UnixNano()
		if st.StartedAt == 0 {
			st.StartedAt = st.FinishedAt
		}
		st.ExitCode = code
		st.Reason = reason
		st.Message = message
		st.Unknown = false
		return nil
	})
	if err != nil && !errors.Is(err, errNothingToCheckpoint) {
		klog.ErrorS(err, "Recording container exit", "containerID", c.ID)
		return
	}
	if !recorded {
		return // another handler recorded this exit first
	}
	if cio := c.IO(); cio != nil {
		cio.Close()
	}
	klog.V(2).InfoS("Container exited", "containerID", c.ID, "exitCode", code, "reason", reason)
	s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

func (s *Service) handleContainerOOM(ctx context.Context, id string) {
	c, err := s.containers.Get(id)
	if err != nil || c.ID != id {
		return
	}
	klog.V(2).InfoS("Container OOM event", "containerID", id)
	c.UpdateMemory(func(st *container.Status) { st.OOMKilled = true })
}

// goHandleContainerExit records an exit in a background goroutine that the
// service joins when it stops. The handler is not cancelled by the stop (an
// exit half-recorded would lose its code) but bounded by cleanupTimeout;
// when the service already stopped, the exit is found from containerd at
// the next start.
func (s *Service) goHandleContainerExit(ctx context.Context, id string, pid, code uint32, at time.Time) {
	ctx = context.WithoutCancel(ctx)
	s.bg.Go(func(context.Context) {
		hctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		defer cancel()
		s.handleContainerExit(hctx, id, pid, code, at)
	})
}

// reconcileContainers finds exits missed while the event stream was down:
// running containers, and UNKNOWN ones whose task is found stopped. Each
// task is asked within config.RecoveryTimeout, at most
// config.RecoveryConcurrency at once.
func (s *Service) reconcileContainers(ctx context.Context) {
	var check []*container.Container
	for _, c := range s.containers.List() {
		switch st := c.Status(); st.State() {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			check = append(check, c)
		case runtimeapi.ContainerState_CONTAINER_UNKNOWN:
			if st.FinishedAt == 0 {
				check = append(check, c)
			}
		}
	}
	s.boundedEach(ctx, len(check), func(ctx context.Context, i int) {
		c := check[i]
		if c.Status().State() == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
			// Only a task that containerd reports stopped tells its exit.
			if code, at, ok := taskStopped(ctx, c.Container); ok {
				s.goHandleContainerExit(ctx, c.ID, 0, code, at)
			}
			return
		}
		if running, code, at := taskRunning(ctx, c.Container); !running {
			s.goHandleContainerExit(ctx, c.ID, 0, code, at)
		}
	})
}

// taskStopped reports the exit of a task that containerd has as stopped.
func taskStopped(ctx context.Context, c containerd.Container) (uint32, time.Time, bool) {
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

package server

import (
	"context"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
)

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
	if c.Status().FinishedAt != 0 {
		return
	}
	if task, err := c.Container.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Deleting exited task", "containerID", id)
		}
	}
	if cio := c.IO(); cio != nil {
		cio.Wait(ioDrainTimeout)
	}
	reason := ""
	if c.Status().OOMKilled {
		reason = "OOMKilled"
	} else if code == 0 {
		reason = "Completed"
	} else {
		reason = "Error"
	}
	s.recordExit(c, int32(code), at, reason, "")
}

func (s *Service) recordExit(c *container.Container, code int32, at time.Time, reason, message string) {
	recorded := false
	err := c.Update(func(st *container.Status) error {
		if st.FinishedAt != 0 {
			return nil
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
	if err != nil {
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

// reconcileContainers finds exits missed while the event stream was down.
func (s *Service) reconcileContainers(ctx context.Context) {
	for _, c := range s.containers.List() {
		if c.Status().State() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		if running, code, at := taskRunning(ctx, c.Container); !running {
			s.handleContainerExit(ctx, c.ID, 0, code, at)
		}
	}
}

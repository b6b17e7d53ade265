package server

import (
	"context"
	"fmt"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// StartContainer starts a created container: its IO (CRI log file written by
// the daemon, attach fan-out, stdin when asked) and its task.
func (s *Service) StartContainer(ctx context.Context, r *runtimeapi.StartContainerRequest) (_ *runtimeapi.StartContainerResponse, retErr error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	sb, err := s.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("sandbox of container %s: %w", c.ID, err)
	}
	if st, _ := sb.State(); st != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var startErr error
	c.UpdateMemory(func(st *container.Status) {
		switch {
		case st.State() != runtimeapi.ContainerState_CONTAINER_CREATED:
			startErr = fmt.Errorf("container %s is in state %s, not CREATED: %w", c.ID, st.State(), errdefs.ErrFailedPrecondition)
		case st.Starting:
			startErr = fmt.Errorf("container %s is already starting: %w", c.ID, errdefs.ErrFailedPrecondition)
		case st.Removing:
			startErr = fmt.Errorf("container %s is being removed: %w", c.ID, errdefs.ErrFailedPrecondition)
		default:
			st.Starting = true
		}
	})
	if startErr != nil {
		return nil, startErr
	}
	defer c.UpdateMemory(func(st *container.Status) { st.Starting = false })
	// A resource update waits until the task runs: one that stored the spec
	// after NewTask had read it, while the container still looked CREATED,
	// would never reach the cgroup.
	c.ResourcesMu.Lock()
	defer c.ResourcesMu.Unlock()
	defer func() {
		if retErr != nil {
			// A container that failed to start is reported as exited with the reason.
			_ = c.Update(func(st *container.Status) error {
				if st.FinishedAt == 0 {
					st.FinishedAt = time.Now().UnixNano()
					st.ExitCode = 128
					st.Reason = "StartError"
					st.Message = retErr.Error()
				}
				return nil
			})
		}
	}()

	cio, err := s.newContainerIO(c)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			c.SetIO(nil)
			cio.Close()
		}
	}()
	task, err := c.Container.NewTask(ctx, cio.Creator())
	if err != nil {
		return nil, fmt.Errorf("creating task for container %s: %w", c.ID, err)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := backend.CleanupCtx(ctx)
			defer cancel()
			if _, err := task.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Rollback: deleting task", "containerID", c.ID)
			}
		}
	}()
	// Set before the process runs: its exit handler drains this IO.
	c.SetIO(cio)
	// Taken before the process is released: a process that exits at once
	// must not report an exit time earlier than its start time.
	startedAt := time.Now().UnixNano()
	if err := task.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting container %s: %w", c.ID, err)
	}
	if err := c.Update(func(st *container.Status) error {
		st.StartedAt = startedAt
		if st.FinishedAt == 0 { // the exit may already have been recorded
			st.Pid = task.Pid()
		}
		return nil
	}); err != nil {
		return nil, err
	}
	s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	klog.V(2).InfoS("Container started", "containerID", c.ID, "pid", task.Pid())
	return &runtimeapi.StartContainerResponse{}, nil
}

// newContainerIO makes the IO of a container (see container.Controller.NewIO).
func (s *Service) newContainerIO(c *container.Container) (*containerio.ContainerIO, error) {
	return s.ctrs().NewIO(c)
}

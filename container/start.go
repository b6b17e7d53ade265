package container

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/stats"
)

// Start starts a created container: its IO (CRI log file, attach fan-out,
// stdin when asked), then its task. A container whose sandbox is not ready,
// or that is not CREATED, or is already starting or being removed, fails
// with errdefs.ErrFailedPrecondition and is left as it was. A start that
// fails later leaves no task and the container EXITED with reason
// StartError.
func (c *Controller) Start(ctx context.Context, ctr *Container) (retErr error) {
	sb, err := c.o.Sandboxes.Get(ctr.SandboxID)
	if err != nil {
		return fmt.Errorf("sandbox of container %s: %w", ctr.ID, err)
	}
	if st, _ := sb.State(); st != sandbox.StateReady {
		return fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	var startErr error
	ctr.UpdateMemory(func(st *Status) {
		switch {
		case st.State() != runtimeapi.ContainerState_CONTAINER_CREATED:
			startErr = fmt.Errorf("container %s is in state %s, not CREATED: %w", ctr.ID, st.State(), errdefs.ErrFailedPrecondition)
		case st.Starting:
			startErr = fmt.Errorf("container %s is already starting: %w", ctr.ID, errdefs.ErrFailedPrecondition)
		case st.Removing:
			startErr = fmt.Errorf("container %s is being removed: %w", ctr.ID, errdefs.ErrFailedPrecondition)
		default:
			st.Starting = true
		}
	})
	if startErr != nil {
		return startErr
	}
	defer ctr.UpdateMemory(func(st *Status) { st.Starting = false })
	// A resource update waits until the task runs: one that stored the spec
	// after NewTask had read it, while the container still looked CREATED,
	// would never reach the cgroup.
	ctr.ResourcesMu.Lock()
	defer ctr.ResourcesMu.Unlock()
	defer func() {
		if retErr != nil {
			// A container that failed to start is reported as exited with the reason.
			_ = ctr.Update(func(st *Status) error {
				if st.FinishedAt == 0 {
					st.FinishedAt = c.now().UnixNano()
					st.ExitCode = 128
					st.Reason = "StartError"
					st.Message = retErr.Error()
				}
				return nil
			})
		}
	}()

	// The IO.
	cio, err := c.NewIO(ctr)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			ctr.SetIO(nil)
			cio.Close()
		}
	}()

	// The task.
	ctr.noTask.Store(false)
	startTask, err := backend.NewTask(ctx, c.o.Deps.Containerd, ctr.Container, ctr.rootfs, cio.Creator())
	if err != nil {
		return fmt.Errorf("creating task for container %s: %w", ctr.ID, err)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := backend.CleanupCtx(ctx)
			defer cancel()
			err := backend.RetryWhileUnavailable(cctx, func(ctx context.Context) error {
				task, err := ctr.Container.Task(ctx, nil)
				if err == nil {
					_, err = task.Delete(ctx, containerd.WithProcessKill)
				}
				return err
			})
			if err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Rollback: deleting task", "containerID", ctr.ID)
			}
		}
	}()
	if err := c.Hooks().Start(ctx, ctr); err != nil { // NRI
		return err
	}
	// Set before the process runs: its exit handler drains this IO.
	ctr.SetIO(cio)
	// Taken before the process is released: a process that exits at once
	// must not report an exit time earlier than its start time.
	startedAt := c.now().UnixNano()
	pid, err := startTask(ctx)
	if err != nil {
		return fmt.Errorf("starting container %s: %w", ctr.ID, err)
	}
	if c.o.SignalDirect {
		ctr.init.Open(pid)
	}
	cgroupDir := ""
	if !ownPIDNamespace(ctr) {
		// Where the exit handler looks for processes the init leaves behind.
		if dir, err := stats.ProcessCgroupDir(pid, ctr.ID); err == nil {
			cgroupDir = dir
		} else {
			klog.V(4).InfoS("Cgroup of container not found", "containerID", ctr.ID, "err", err)
		}
	}
	if err := ctr.Update(func(st *Status) error {
		st.StartedAt = startedAt
		st.CgroupDir = cgroupDir
		if st.FinishedAt == 0 { // the exit may already have been recorded
			st.Pid = pid
		}
		return nil
	}); err != nil {
		return err
	}
	c.o.OnEvent(ctr, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	klog.V(2).InfoS("Container started", "containerID", ctr.ID, "pid", pid)
	return nil
}

package container

import (
	"context"
	"errors"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/stats"
)

// ErrNothingToCheckpoint returned by the function given to Update makes
// the update write nothing.
var ErrNothingToCheckpoint = errors.New("nothing to checkpoint")

// IODrainTimeout bounds how long an exit waits for the container's output to reach the log.
const IODrainTimeout = 5 * time.Second

// HandleExit records the exit of the task of container id (a container
// not in the store is ignored): the task is deleted (so the shim closes
// the pipes and the log writer drains), then the exit code and reason are
// checkpointed. The exit of a container that is CREATED and not being
// started (a task recovery deleted unstarted) is ignored.
func (c *Controller) HandleExit(ctx context.Context, id string, code uint32, at time.Time) {
	ctr, err := c.o.Store.Get(id)
	if err != nil || ctr.ID != id {
		return
	}
	if st := ctr.Status(); st.State() == runtimeapi.ContainerState_CONTAINER_CREATED && !st.Starting {
		// Not started and not being started: the exit of a task that
		// recovery deleted because a killed daemon never started it. The
		// container stays CREATED so that StartContainer can be retried.
		klog.V(2).InfoS("Ignoring the exit of a task never started", "containerID", id, "exitCode", code)
		return
	}
	c.Finish(ctx, ctr, code, at)
}

// HandleExitAsync is HandleExit in a background goroutine of the owner
// (Options.Go). The handler is not cancelled by the owner's stop (an exit
// half-recorded would lose its code) but bounded by Options.CleanupTimeout;
// when the owner already stopped, the exit is found from containerd at the
// next start.
func (c *Controller) HandleExitAsync(ctx context.Context, id string, code uint32, at time.Time) {
	ctx = context.WithoutCancel(ctx)
	c.o.Go(func(context.Context) {
		hctx, cancel := context.WithTimeout(ctx, c.o.CleanupTimeout)
		defer cancel()
		c.HandleExit(hctx, id, code, at)
	})
}

// Finish is HandleExit for a container at hand (also one recovery has not
// published yet).
func (c *Controller) Finish(ctx context.Context, ctr *Container, code uint32, at time.Time) {
	if ctr.Status().FinishedAt != 0 {
		return
	}
	// Another handler is recording this exit (it records it whatever
	// happens: waiters watch Stopped): a second task deletion would only
	// be refused.
	if !ctr.finishing.CompareAndSwap(false, true) {
		return
	}
	// The exit code is checkpointed before the task (the only other holder
	// of it) is deleted: a daemon killed from here on finds it at start.
	if err := ctr.Update(func(st *Status) error {
		if st.FinishedAt != 0 || st.PendingExitAt != 0 {
			return ErrNothingToCheckpoint // recorded meanwhile: write nothing
		}
		st.PendingExitAt, st.PendingExitCode = at.UnixNano(), int32(code)
		return nil
	}); err != nil && !errors.Is(err, ErrNothingToCheckpoint) {
		klog.ErrorS(err, "Checkpointing pending exit", "containerID", ctr.ID)
	}
	c.deleteExitedTask(ctx, ctr)
	if cio := ctr.IO(); cio != nil {
		cio.Wait(IODrainTimeout)
	}
	c.RecordExit(ctr, int32(code), at, ExitReason(ctr.Status().OOMKilled, code), "")
}

// deleteExitedTask deletes the task of ctr, whose init exited. Processes the
// init left behind are killed first (containerd's WithProcessKill: a kill
// of every process of the container, then a wait), unless none can be left:
// the container had its own PID namespace (the kernel killed everything in
// it before it reported the init's exit), or its cgroup has no process left
// (none can enter it any more). Then the task is deleted in one call.
func (c *Controller) deleteExitedTask(ctx context.Context, ctr *Container) {
	if err := backend.DeleteExitedTask(ctx, c.o.Deps.Containerd, ctr.Container, nothingLeft(ctr)); err != nil {
		klog.ErrorS(err, "Deleting exited task", "containerID", ctr.ID)
		return
	}
	ctr.noTask.Store(true)
}

// nothingLeft reports whether no process of ctr can be left after its init
// exited.
func nothingLeft(ctr *Container) bool {
	if ownPIDNamespace(ctr) {
		return true
	}
	dir := ctr.Status().CgroupDir
	if dir == "" {
		return false
	}
	empty, err := stats.CgroupEmpty(dir)
	return err == nil && empty
}

// ownPIDNamespace reports whether ctr runs in a PID namespace of its own
// (kubelet's default; not a pod's shared one, the host's or another
// container's).
func ownPIDNamespace(ctr *Container) bool {
	return ctr.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_CONTAINER
}

// ExitReason is ContainerStatus.reason of an exit.
func ExitReason(oomKilled bool, code uint32) string {
	switch {
	case oomKilled:
		return "OOMKilled"
	case code == 0:
		return "Completed"
	default:
		return "Error"
	}
}

// RecordExit checkpoints the exit of the container unless one is recorded
// already, closes its IO and reports CONTAINER_STOPPED.
func (c *Controller) RecordExit(ctr *Container, code int32, at time.Time, reason, message string) {
	recorded := false
	err := ctr.Update(func(st *Status) error {
		if st.FinishedAt != 0 {
			// Recorded by another handler: write nothing (the container
			// may be being removed, its directory with it).
			return ErrNothingToCheckpoint
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
	if err != nil && !errors.Is(err, ErrNothingToCheckpoint) {
		klog.ErrorS(err, "Recording container exit", "containerID", ctr.ID)
		return
	}
	if !recorded {
		return // another handler recorded this exit first
	}
	ctr.init.Close()
	if cio := ctr.IO(); cio != nil {
		cio.Close()
	}
	klog.V(2).InfoS("Container exited", "containerID", ctr.ID, "exitCode", code, "reason", reason)
	c.o.OnEvent(ctr, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
}

// HandleOOM marks container id OOM-killed (its exit reason becomes
// OOMKilled).
func (c *Controller) HandleOOM(ctx context.Context, id string) {
	ctr, err := c.o.Store.Get(id)
	if err != nil || ctr.ID != id {
		return
	}
	klog.V(2).InfoS("Container OOM event", "containerID", id)
	ctr.UpdateMemory(func(st *Status) { st.OOMKilled = true })
}

// Reconcile finds exits missed while the event stream was down: running
// containers, and UNKNOWN ones whose task is found stopped, each asked
// through Options.Each (bounded); exits found are handled in the background.
func (c *Controller) Reconcile(ctx context.Context) {
	var check []*Container
	for _, ctr := range c.o.Store.List() {
		switch st := ctr.Status(); st.State() {
		case runtimeapi.ContainerState_CONTAINER_RUNNING:
			check = append(check, ctr)
		case runtimeapi.ContainerState_CONTAINER_UNKNOWN:
			if st.FinishedAt == 0 {
				check = append(check, ctr)
			}
		}
	}
	c.o.Each(ctx, len(check), func(ctx context.Context, i int) {
		ctr := check[i]
		if ctr.Status().State() == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
			// Only a task that containerd reports stopped tells its exit.
			if code, at, ok := backend.TaskStopped(ctx, ctr.Container); ok {
				c.HandleExitAsync(ctx, ctr.ID, code, at)
			}
			return
		}
		if running, code, at := backend.TaskRunning(ctx, ctr.Container, c.o.Deps.Clock); !running {
			c.HandleExitAsync(ctx, ctr.ID, code, at)
		}
	})
}

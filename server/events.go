package server

import (
	"context"
	"fmt"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// monitorEvents holds one subscription to containerd's task events and
// re-subscribes (reconciling state with containerd) whenever it breaks, e.g.
// when containerd restarts.
func (s *Service) monitorEvents(ctx context.Context) {
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		sctx, cancel := context.WithCancel(ctx)
		evCh, errCh := s.ctrdState.Subscribe(sctx,
			fmt.Sprintf(`namespace==%q,topic=="/tasks/exit"`, s.config.ContainerdNamespace),
			fmt.Sprintf(`namespace==%q,topic=="/tasks/oom"`, s.config.ContainerdNamespace),
		)
		if !first {
			// Exits that happened while we were not subscribed are found by asking containerd.
			s.reconcileTasks(s.nsCtx(ctx))
		}
		first = false
		err := s.consumeEvents(sctx, evCh, errCh, &backoff)
		cancel()
		if ctx.Err() != nil {
			return
		}
		klog.ErrorS(err, "containerd event stream broken; re-subscribing", "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (s *Service) consumeEvents(ctx context.Context, evCh <-chan *events.Envelope, errCh <-chan error, backoff *time.Duration) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errCh:
			return err
		case e := <-evCh:
			*backoff = 100 * time.Millisecond
			s.handleEvent(s.nsCtx(context.WithoutCancel(ctx)), e)
		}
	}
}

func (s *Service) handleEvent(ctx context.Context, e *events.Envelope) {
	v, err := typeurl.UnmarshalAny(e.Event)
	if err != nil {
		klog.ErrorS(err, "Decoding containerd event", "topic", e.Topic)
		return
	}
	switch ev := v.(type) {
	case *eventtypes.TaskExit:
		klog.V(4).InfoS("Task exit", "container", ev.ContainerID, "execID", ev.ID, "status", ev.ExitStatus)
		if ev.ID != ev.ContainerID {
			return // an exec process; its caller waits on it
		}
		at := time.Now()
		if ev.ExitedAt != nil {
			at = ev.ExitedAt.AsTime()
		}
		if sb, err := s.sandboxes.Get(ev.ContainerID); err == nil && sb.ID == ev.ContainerID {
			s.handleSandboxExit(ctx, sb, ev.ExitStatus, at)
			return
		}
		// Recording an exit waits for the container's output to drain (up to
		// ioDrainTimeout): do it aside so one slow container does not hold
		// up the exits of others (a pod stop kills them all at once).
		go s.handleContainerExit(ctx, ev.ContainerID, ev.Pid, ev.ExitStatus, at)
	case *eventtypes.TaskOOM:
		s.handleContainerOOM(ctx, ev.ContainerID)
	}
}

// handleSandboxExit marks the sandbox NotReady and reaps the pause task.
func (s *Service) handleSandboxExit(ctx context.Context, sb *sandbox.Sandbox, code uint32, at time.Time) {
	st, _ := sb.State()
	if st == sandbox.StateNotReady {
		return
	}
	if task, err := sb.Container.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Deleting exited pause task", "podSandboxID", sb.ID)
		}
	}
	sb.SetNotReady(code, at)
	klog.V(2).InfoS("Pod sandbox exited", "podSandboxID", sb.ID, "exitCode", code)
	s.emitSandboxEvent(sb, runtimeapiStopped)
}

// reconcileTasks asks containerd for the state of every task we think runs.
func (s *Service) reconcileTasks(ctx context.Context) {
	for _, sb := range s.sandboxes.List() {
		if st, _ := sb.State(); st != sandbox.StateReady {
			continue
		}
		if running, code, at := taskRunning(ctx, sb.Container); !running {
			s.handleSandboxExit(ctx, sb, code, at)
		}
	}
	s.reconcileContainers(ctx)
}

// taskRunning reports whether the container's task runs, and its exit if not.
func taskRunning(ctx context.Context, c containerd.Container) (bool, uint32, time.Time) {
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return false, 255, time.Now()
		}
		return true, 0, time.Time{} // unknown: do not change state on a transient error
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
		return false, 255, time.Now()
	}
}

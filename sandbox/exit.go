package sandbox

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
)

// HandleExit records the exit of the pause task (code at the time at):
// the sandbox becomes NotReady, the task is deleted and a STOPPED event
// is emitted. An exit of a sandbox already NotReady is ignored.
func (c *Controller) HandleExit(ctx context.Context, sb *Sandbox, code uint32, at time.Time) {
	// Recorded before the task is deleted: a stop waiting for the exit
	// goes on at once, not after a slow shim's task deletion (the exits of
	// every other pod wait behind this one in the event monitor).
	if !c.recordExit(sb, code, at) {
		return
	}
	// Bounded: a hung shim must not hold up the event monitor for good.
	dctx, cancel := context.WithTimeout(ctx, backend.CleanupTimeout)
	defer cancel()
	// One call: the pause container runs nothing but the exited pause
	// process (the client kills what is left if containerd refuses).
	if err := c.deletePause(dctx, sb, func(ctx context.Context) error {
		return backend.DeleteExitedTask(ctx, c.o.Deps.Containerd, sb.Container, true)
	}); err != nil {
		klog.ErrorS(err, "Deleting exited pause task", "podSandboxID", sb.ID)
	}
}

// deletePause runs del, the deletion of sb's pause task, unless the task
// is known gone; one deletion at a time. The exit handler and a stop both
// delete the task, and two Tasks/Delete of one task at once make
// containerd drop its connection to the shim while the shim lives on
// ("cannot delete a deleted process", then "cleaning up dead shim"), left
// for the removal's /proc reap to kill.
func (c *Controller) deletePause(ctx context.Context, sb *Sandbox, del func(context.Context) error) error {
	select {
	case sb.deleteLock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the deletion of the pause task of %s: %w", sb.ID, ctx.Err())
	}
	defer func() { <-sb.deleteLock }()
	if sb.noTask.Load() {
		return nil
	}
	if err := del(ctx); err != nil {
		return err
	}
	sb.noTask.Store(true)
	return nil
}

// recordExit makes the sandbox NotReady with the pause exit and emits
// CONTAINER_STOPPED, once; it reports whether this call recorded it.
func (c *Controller) recordExit(sb *Sandbox, code uint32, at time.Time) bool {
	if !sb.SetNotReady(code, at) {
		return false
	}
	sb.init.Close()
	klog.V(2).InfoS("Pod sandbox exited", "podSandboxID", sb.ID, "exitCode", code)
	c.emit(sb, runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT)
	return true
}

// Reconcile asks containerd whether the pause task of every sandbox we
// think is ready still runs, and records the exits of those that do not
// (exits whose event was missed), through Options.Each.
func (c *Controller) Reconcile(ctx context.Context) {
	var ready []*Sandbox
	for _, sb := range c.o.Store.List() {
		if st, _ := sb.State(); st == StateReady {
			ready = append(ready, sb)
		}
	}
	c.o.Each(ctx, len(ready), func(ctx context.Context, i int) {
		if running, code, at := backend.TaskRunning(ctx, ready[i].Container, c.o.Deps.Clock); !running {
			c.HandleExit(ctx, ready[i], code, at)
		}
	})
}

package container

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
)

// killWaitTimeout bounds the wait for a SIGKILLed container to be reported exited.
const killWaitTimeout = 2 * time.Minute

// exitRecordWait bounds the wait for an exit being handled to be recorded:
// the task deletion, then the output drain (IODrainTimeout).
const exitRecordWait = IODrainTimeout + 10*time.Second

// Stop sends the image's stop signal (SIGTERM by default), waits up to the
// timeout, then SIGKILLs and waits for the exit to be recorded. Stopping a
// container that is not running is not an error.
//
// Concurrent calls are not serialised: a call with a shorter timeout (kubelet
// forcing a stop, Remove) SIGKILLs without waiting for the grace period of
// an earlier call, which then returns as soon as the container has exited.
func (c *Controller) Stop(ctx context.Context, ctr *Container, timeout time.Duration) error {
	st := ctr.Status()
	state := st.State()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING && state != runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		return nil
	}
	// The task is addressed by the container's ID on containerd's task
	// service (no Tasks/Get to load it first). It is waited on directly,
	// not only through the exit event: an exit whose event comes late or
	// was lost (the stream re-subscribing) is handled here, and the stop
	// does not wait out its deadline.
	wctx, cancelWait := context.WithCancel(ctx)
	defer cancelWait()
	exitCh := backend.WaitTask(wctx, c.o.Deps.Containerd, ctr.ID)
	// stopped waits up to d for the exit to be recorded.
	stopped := func(d <-chan time.Time) (bool, error) {
		for {
			select {
			case <-ctr.Stopped():
				return true, nil
			case st := <-exitCh:
				exitCh = nil
				if st.Error() == nil {
					// Recorded like an event's exit (idempotent if the event
					// comes too); Stopped closes when it is.
					c.HandleExitAsync(ctx, ctr.ID, st.ExitCode(), st.ExitTime())
				}
			case <-d:
				return false, nil
			case <-ctx.Done():
				return false, ctx.Err()
			}
		}
	}
	// The first signal: the image's stop signal when there is a grace
	// period, else SIGKILL (to the init alone when the container has its
	// own PID namespace, to every process otherwise: killAllProcesses).
	killAll := killAllProcesses(ctr)
	sig, all := syscall.SIGKILL, killAll
	if timeout > 0 {
		sig, all = stopSignal(ctr), false
	}
	if err := c.signal(ctx, ctr, sig, all); err != nil {
		if !errdefs.IsNotFound(err) {
			return fmt.Errorf("sending %v to %s: %w", sig, ctr.ID, err)
		}
		// The task was deleted before the stop began. The exit handler
		// deletes it before it records the exit (draining the output in
		// between): give it time to record the real exit code.
		if !stoppedWithin(ctx, ctr, exitRecordWait) {
			// The task is gone without us seeing the exit.
			c.RecordExit(ctr, 255, c.now(), "Unknown", "container task disappeared")
		}
		return nil
	}
	if timeout > 0 {
		grace := time.NewTimer(timeout)
		defer grace.Stop()
		if ok, err := stopped(grace.C); ok || err != nil {
			return err
		}
		// A task gone by now exited meanwhile: its exit is awaited below.
		if err := c.signal(ctx, ctr, syscall.SIGKILL, killAll); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("killing %s: %w", ctr.ID, err)
		}
	}
	killWait := time.NewTimer(killWaitTimeout)
	defer killWait.Stop()
	if ok, err := stopped(killWait.C); ok || err != nil {
		return err
	}
	return fmt.Errorf("container %s did not exit after SIGKILL: %w", ctr.ID, context.DeadlineExceeded)
}

// signal sends sig to the task of ctr (to every process of the container
// with all). An error because the container exited meanwhile (its exit
// recorded within exitRecordWait) is not one; NotFound is returned as is.
func (c *Controller) signal(ctx context.Context, ctr *Container, sig syscall.Signal, all bool) error {
	if !all && ctr.init.Signal(sig) {
		return nil // through the init's pidfd (package pidfd)
	}
	err := backend.KillTask(ctx, c.o.Deps.Containerd, ctr.ID, sig, all)
	if err == nil || errdefs.IsNotFound(err) || !stoppedWithin(ctx, ctr, exitRecordWait) {
		return err
	}
	return nil
}

// killAllProcesses reports whether a SIGKILL must be sent to every process
// of ctr rather than to its init alone. In a PID namespace of its own (the
// default), the kernel kills every process of the namespace when its init
// dies, as containerd's built-in CRI relies on; a kill of all (runc kill
// --all) would freeze the cgroup, list it, signal each process and thaw it
// (runc 1.1 on cgroup v1) for nothing.
func killAllProcesses(ctr *Container) bool {
	return !ownPIDNamespace(ctr)
}

// stopSignal is the image's stop signal, SIGTERM when it has none or an
// unknown one.
func stopSignal(ctr *Container) syscall.Signal {
	if ctr.StopSignal == "" {
		return syscall.SIGTERM
	}
	sig, err := signal.ParseSignal(ctr.StopSignal)
	if err != nil {
		klog.ErrorS(err, "Unknown stop signal; using SIGTERM", "containerID", ctr.ID, "signal", ctr.StopSignal)
		return syscall.SIGTERM
	}
	return sig
}

// stoppedWithin reports whether the container's exit is recorded within d.
func stoppedWithin(ctx context.Context, ctr *Container, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctr.Stopped():
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// StopAll stops every container of a sandbox at once (no grace period).
func (c *Controller) StopAll(ctx context.Context, sandboxID string) error {
	// The pod's containers are stopped concurrently, as kubelet's pod kill
	// does: each waits out its own grace period, not the sum of all.
	ctrs := c.o.Store.ListBySandbox(sandboxID)
	errs := make([]error, len(ctrs))
	var wg sync.WaitGroup
	for i, ctr := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Stop(ctx, ctr, 0)
		}()
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d container(s) failed to stop: %w", len(failed), failed[0])
	}
	return nil
}

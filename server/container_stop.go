package server

import (
	"context"
	"fmt"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/signal"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
)

// killWaitTimeout bounds the wait for a SIGKILLed container to be reported exited.
const killWaitTimeout = 2 * time.Minute

// StopContainer sends the image's stop signal (SIGTERM by default), waits up
// to the timeout, then SIGKILLs. Stopping a container that is not running is
// not an error.
func (s *Service) StopContainer(ctx context.Context, r *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Idempotent: a container that is gone is stopped.
			return &runtimeapi.StopContainerResponse{}, nil
		}
		return nil, err
	}
	if err := s.stopContainer(ctx, c, time.Duration(r.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// Concurrent calls are not serialised: a call with a shorter timeout (kubelet
// forcing a stop, RemoveContainer) SIGKILLs without waiting for the grace
// period of an earlier call, which then returns as soon as the container has
// exited.
func (s *Service) stopContainer(ctx context.Context, c *container.Container, timeout time.Duration) error {
	st := c.Status()
	state := st.State()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING && state != runtimeapi.ContainerState_CONTAINER_UNKNOWN {
		return nil
	}
	task, err := c.Container.Task(ctx, nil)
	if err != nil {
		if !errdefs.IsNotFound(err) {
			return fmt.Errorf("loading task of %s: %w", c.ID, err)
		}
		// The exit handler deletes the task before it records the exit
		// (draining the output in between): give it time to record the
		// real exit code.
		if stoppedWithin(ctx, c, exitRecordWait) {
			return nil
		}
		// The task is gone without us seeing the exit.
		s.recordExit(c, 255, time.Now(), "Unknown", "container task disappeared")
		return nil
	}
	// kill sends sig; an error because the container exited meanwhile (its
	// task deleted, its shim gone) is not one.
	kill := func(sig syscall.Signal, opts ...containerd.KillOpts) error {
		err := task.Kill(ctx, sig, opts...)
		if err == nil || errdefs.IsNotFound(err) || stoppedWithin(ctx, c, exitRecordWait) {
			return nil
		}
		return err
	}
	if timeout > 0 {
		sig := syscall.SIGTERM
		if c.StopSignal != "" {
			if parsed, err := signal.ParseSignal(c.StopSignal); err == nil {
				sig = parsed
			} else {
				klog.ErrorS(err, "Unknown stop signal; using SIGTERM", "containerID", c.ID, "signal", c.StopSignal)
			}
		}
		if err := kill(sig); err != nil {
			return fmt.Errorf("sending %v to %s: %w", sig, c.ID, err)
		}
		select {
		case <-c.Stopped():
			return nil
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := kill(syscall.SIGKILL, containerd.WithKillAll); err != nil {
		return fmt.Errorf("killing %s: %w", c.ID, err)
	}
	select {
	case <-c.Stopped():
		return nil
	case <-time.After(killWaitTimeout):
		return fmt.Errorf("container %s did not exit after SIGKILL: %w", c.ID, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exitRecordWait bounds the wait for an exit being handled to be recorded:
// the task deletion, then the output drain (ioDrainTimeout).
const exitRecordWait = ioDrainTimeout + 10*time.Second

// stoppedWithin reports whether the container's exit is recorded within d.
func stoppedWithin(ctx context.Context, c *container.Container, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.Stopped():
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// stopSandboxContainers stops every container of a sandbox at once (no grace period).
func (s *Service) stopSandboxContainers(ctx context.Context, sandboxID string) error {
	var errs []error
	for _, c := range s.containers.ListBySandbox(sandboxID) {
		if err := s.stopContainer(ctx, c, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d container(s) failed to stop: %w", len(errs), errs[0])
	}
	return nil
}

package containerexec

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/streaming"
)

// execRun drives one created exec process to its end.
type execRun struct {
	proc backend.ExecProcess
	// ioDone is closed once the process output has been copied entirely.
	ioDone <-chan struct{}
	// closeIO releases this side of the IO (FIFOs); it must be idempotent.
	closeIO func() error
	// timeout kills the process and fails the run (0: none).
	timeout time.Duration
	// drainTimeout bounds the wait for the output after the process exited
	// (0: wait until the timeout or ctx ends).
	drainTimeout time.Duration
	resize       <-chan streaming.TerminalSize
}

// run starts the process and waits for its exit, then for its output to be
// drained, and returns the exit code. On timeout the process is killed and
// the error wraps context.DeadlineExceeded. The process is always deleted and
// its IO released: at once when the output was drained, in the background
// otherwise (deleting a process whose output is held open by a child waits in
// the shim), so that run returns promptly. Helper goroutines end before run
// returns.
func (r execRun) run(ctx context.Context) (code uint32, retErr error) {
	id := r.proc.ID()
	ctx, cancel := context.WithCancel(ctx)
	drained := false
	defer func() {
		cancel()
		if drained {
			r.cleanup(ctx)
			return
		}
		go r.cleanup(ctx)
	}()

	var timeoutC <-chan time.Time
	if r.timeout > 0 {
		// Started before the process, so that a slow start counts too.
		t := time.NewTimer(r.timeout)
		defer t.Stop()
		timeoutC = t.C
	}

	exitCh, err := r.proc.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("waiting for exec process %s: %w", id, err)
	}
	if err := r.proc.Start(ctx); err != nil {
		return 0, fmt.Errorf("starting exec process %s: %w", id, err)
	}

	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		wg.Wait()
	}()
	if r.resize != nil {
		wg.Go(func() { r.handleResize(ctx, done) })
	}

	select {
	case st := <-exitCh:
		code, _, err := st.Result()
		if err != nil {
			return 0, fmt.Errorf("waiting for exec process %s: %w", id, err)
		}
		drained = r.drain(ctx, timeoutC)
		klog.V(4).InfoS("Exec process exited", "execID", id, "exitCode", code, "outputDrained", drained)
		return code, nil
	case <-timeoutC:
		r.kill(ctx, exitCh)
		return 0, fmt.Errorf("exec process %s: timeout %s exceeded: %w", id, r.timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		r.kill(ctx, exitCh)
		return 0, fmt.Errorf("exec process %s: %w", id, ctx.Err())
	}
}

// drain waits for the output to be copied after the process exited. It
// reports whether it was.
func (r execRun) drain(ctx context.Context, timeoutC <-chan time.Time) bool {
	var drainC <-chan time.Time
	if r.drainTimeout > 0 {
		t := time.NewTimer(r.drainTimeout)
		defer t.Stop()
		drainC = t.C
	}
	select {
	case <-r.ioDone:
		return true
	case <-drainC:
		klog.V(2).InfoS("Exec process exited but its output is still held open (by a background process?); not waiting for it",
			"execID", r.proc.ID(), "drainTimeout", r.drainTimeout)
	case <-timeoutC:
		klog.V(2).InfoS("Exec timeout reached while draining the output of the exited process", "execID", r.proc.ID())
	case <-ctx.Done():
	}
	return false
}

// kill kills the exec process and waits (bounded) for it to exit.
func (r execRun) kill(ctx context.Context, exitCh <-chan containerd.ExitStatus) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execKillWait)
	defer cancel()
	if err := r.proc.Kill(kctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Failed to kill exec process", "execID", r.proc.ID())
	}
	select {
	case <-exitCh:
	case <-kctx.Done():
		klog.ErrorS(kctx.Err(), "Exec process did not exit after SIGKILL", "execID", r.proc.ID())
	}
}

// cleanup deletes the process (killing it if needed) and releases its IO.
func (r execRun) cleanup(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execCleanupTimeout)
	defer cancel()
	if _, err := r.proc.Delete(dctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Failed to delete exec process", "execID", r.proc.ID())
	}
	if r.closeIO != nil {
		if err := r.closeIO(); err != nil {
			klog.ErrorS(err, "Failed to release exec IO", "execID", r.proc.ID())
		}
	}
}

// handleResize applies the client's terminal sizes until done is closed.
func (r execRun) handleResize(ctx context.Context, done <-chan struct{}) {
	ResizeLoop(ctx, r.resize, done, func(w, h uint32) error { return r.proc.Resize(ctx, w, h) }, r.proc.ID())
}

// ResizeLoop calls resize for every non-empty size received until the
// channel is closed or done is closed (it never outlives the session).
func ResizeLoop(ctx context.Context, sizes <-chan streaming.TerminalSize, done <-chan struct{}, resize func(w, h uint32) error, id string) {
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if sz.Width == 0 || sz.Height == 0 {
				continue
			}
			if err := resize(uint32(sz.Width), uint32(sz.Height)); err != nil {
				klog.V(2).InfoS("Failed to resize terminal", "id", id, "width", sz.Width, "height", sz.Height, "err", err)
			}
		}
	}
}

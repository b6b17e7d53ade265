package server

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/streaming"
)

const (
	// maxExecSyncOutput caps each of ExecSync's stdout and stderr; the rest
	// of the output is read and dropped (as containerd does).
	maxExecSyncOutput = 16 << 20
	// maxExecSyncResponse keeps stdout+stderr within the 16 MiB gRPC
	// message limit of the server and of kubelet's client (minus room for
	// the protobuf framing), so that a large output is truncated rather
	// than failing the call with ResourceExhausted.
	maxExecSyncResponse = 16<<20 - 4<<10
	// initialSizeWait is how long a TTY exec waits for the client's first
	// terminal size, so that the process starts with the right size.
	initialSizeWait = 100 * time.Millisecond
	// execKillWait bounds the wait for an exec process to exit after SIGKILL.
	execKillWait = 10 * time.Second
	// execCleanupTimeout bounds deleting an exec process. The runc shim
	// itself waits up to 10s for the process output before deleting it.
	execCleanupTimeout = time.Minute
)

// ExecSync runs a command in a running container and returns its output and
// exit code. A non-zero exit code is not an error.
func (s *Service) ExecSync(ctx context.Context, r *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec command is empty: %w", errdefs.ErrInvalidArgument)
	}
	stdout := newCappedBuffer(maxExecSyncOutput)
	stderr := newCappedBuffer(maxExecSyncOutput)
	var timeout time.Duration
	if r.GetTimeout() > 0 {
		timeout = time.Duration(r.GetTimeout()) * time.Second
	}
	code, err := s.execInContainer(s.nsCtx(ctx), r.GetContainerId(), execOptions{
		cmd:     r.GetCmd(),
		stdout:  stdout,
		stderr:  stderr,
		timeout: timeout,
	})
	if err != nil {
		return nil, err
	}
	out, errOut, trimmed := fitOutput(stdout.Bytes(), stderr.Bytes(), maxExecSyncResponse)
	if trimmed || stdout.Truncated() || stderr.Truncated() {
		klog.V(2).InfoS("ExecSync output truncated", "containerID", r.GetContainerId(), "stdoutBytes", len(out), "stderrBytes", len(errOut))
	}
	return &runtimeapi.ExecSyncResponse{
		Stdout:   out,
		Stderr:   errOut,
		ExitCode: int32(code),
	}, nil
}

// fitOutput trims stdout and stderr to at most limit bytes together,
// keeping stdout first.
func fitOutput(stdout, stderr []byte, limit int) ([]byte, []byte, bool) {
	if len(stdout)+len(stderr) <= limit {
		return stdout, stderr, false
	}
	if len(stdout) > limit {
		stdout = stdout[:limit]
	}
	return stdout, stderr[:min(len(stderr), limit-len(stdout))], true
}

// Exec checks that the container runs and returns the streaming URL that
// runs the command (see streamRuntime.Exec).
func (s *Service) Exec(ctx context.Context, r *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("streaming server: %w", errdefs.ErrUnavailable)
	}
	c, err := s.runningContainer(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if len(r.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec command is empty: %w", errdefs.ErrInvalidArgument)
	}
	return s.stream.GetExec(&runtimeapi.ExecRequest{
		ContainerId: c.ID,
		Cmd:         r.GetCmd(),
		Tty:         r.GetTty(),
		Stdin:       r.GetStdin(),
		Stdout:      r.GetStdout(),
		Stderr:      r.GetStderr(),
	})
}

// runningContainer finds a container (NotFound) and checks that it runs
// (FailedPrecondition).
func (s *Service) runningContainer(id string) (*container.Container, error) {
	c, err := s.containers.Get(id)
	if err != nil {
		return nil, err
	}
	if st := c.Status().State(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		return nil, fmt.Errorf("container %s is in state %s, not running: %w", c.ID, st, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// execOptions describes one exec (ExecSync or streaming Exec).
type execOptions struct {
	cmd    []string
	stdin  io.Reader
	stdout io.WriteCloser // nil discards
	stderr io.WriteCloser // nil discards; unused with tty
	tty    bool
	resize <-chan streaming.TerminalSize
	// timeout kills the process and fails the exec (0: none).
	timeout time.Duration
}

// execInContainer runs opts.cmd in a running container and returns its exit
// code once it exited and its output was drained (for at most the configured
// drain timeout: a background child may keep the output open).
func (s *Service) execInContainer(ctx context.Context, id string, opts execOptions) (uint32, error) {
	c, err := s.runningContainer(id)
	if err != nil {
		return 0, err
	}
	spec, err := c.Container.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading spec of container %s: %w", c.ID, err)
	}
	task, err := c.Container.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("container %s has no task: %w", c.ID, errdefs.ErrFailedPrecondition)
		}
		return 0, fmt.Errorf("loading task of container %s: %w", c.ID, err)
	}
	if spec.Process == nil {
		return 0, fmt.Errorf("container %s has no process in its spec: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	pspec := spec.Process
	pspec.Args = opts.cmd
	pspec.CommandLine = ""
	pspec.Terminal = opts.tty
	pspec.ConsoleSize = nil
	if opts.tty {
		pspec.Env = setEnv(pspec.Env, "TERM", "xterm")
		if opts.resize != nil {
			var sz streaming.TerminalSize
			sz, opts.resize = firstSize(opts.resize, initialSizeWait)
			if sz.Width > 0 && sz.Height > 0 {
				pspec.ConsoleSize = &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
			}
		}
	}

	execID := newID()
	eio, err := containerio.NewExecIO(s.execFIFORoot(c.ID), execID, opts.tty, opts.stdin != nil)
	if err != nil {
		return 0, fmt.Errorf("creating exec IO: %w", err)
	}
	proc, err := task.Exec(ctx, execID, pspec, eio.Creator())
	if err != nil {
		_ = eio.Close()
		return 0, fmt.Errorf("creating exec process in container %s: %w", c.ID, err)
	}
	klog.V(4).InfoS("Exec process created", "containerID", c.ID, "execID", execID, "cmd", opts.cmd, "tty", opts.tty)
	ioDone := eio.Attach(containerio.AttachOptions{
		Stdin:     opts.stdin,
		Stdout:    opts.stdout,
		Stderr:    opts.stderr,
		Tty:       opts.tty,
		StdinOnce: true,
		CloseStdin: func() error {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return proc.CloseIO(cctx, containerd.WithStdinCloser)
		},
	})
	return execRun{
		proc:         proc,
		ioDone:       ioDone,
		closeIO:      eio.Close,
		timeout:      opts.timeout,
		drainTimeout: s.config.DrainExecSyncIOTimeout.Duration,
		resize:       opts.resize,
	}.run(ctx)
}

// execFIFORoot is where the FIFOs of a container's exec processes are made:
// under the container's state directory, so removing the container also
// removes what a crashed daemon left behind.
func (s *Service) execFIFORoot(containerID string) string {
	return filepath.Join(s.config.StateDir, "containers", containerID, "exec")
}

// firstSize waits up to wait for the client's first terminal size (clients
// send it right after connecting). It returns the channel to read further
// sizes from: nil once the channel was closed.
func firstSize(resize <-chan streaming.TerminalSize, wait time.Duration) (streaming.TerminalSize, <-chan streaming.TerminalSize) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sz, ok := <-resize:
		if !ok {
			return streaming.TerminalSize{}, nil
		}
		return sz, resize
	case <-t.C:
		return streaming.TerminalSize{}, resize
	}
}

// setEnv sets key=value in env, replacing an existing key.
func setEnv(env []string, key, value string) []string {
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return append(out, key+"="+value)
}

// execProcess is what execRun needs of a containerd exec process
// (containerd.Process implements it; tests use a fake).
type execProcess interface {
	ID() string
	Start(ctx context.Context) error
	Wait(ctx context.Context) (<-chan containerd.ExitStatus, error)
	Kill(ctx context.Context, sig syscall.Signal, opts ...containerd.KillOpts) error
	Resize(ctx context.Context, w, h uint32) error
	Delete(ctx context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error)
}

var _ execProcess = containerd.Process(nil)

// execRun drives one created exec process to its end.
type execRun struct {
	proc execProcess
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
	resizeLoop(ctx, r.resize, done, func(w, h uint32) error { return r.proc.Resize(ctx, w, h) }, r.proc.ID())
}

// resizeLoop calls resize for every non-empty size received until the
// channel is closed or done is closed (it never outlives the session).
func resizeLoop(ctx context.Context, sizes <-chan streaming.TerminalSize, done <-chan struct{}, resize func(w, h uint32) error, id string) {
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

// cappedBuffer keeps the first max bytes written to it and drops the rest
// while still reporting success, so the writer keeps draining the process
// output. It is safe for concurrent use; Close does nothing.
type cappedBuffer struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func newCappedBuffer(maxSize int) *cappedBuffer { return &cappedBuffer{max: maxSize} }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room < len(p) {
		b.truncated = true
		if room < 0 {
			room = 0
		}
		b.buf = append(b.buf, p[:room]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

// Close implements io.WriteCloser; the buffer stays readable.
func (b *cappedBuffer) Close() error { return nil }

// Bytes returns a copy of what was kept.
func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Truncated reports whether output was dropped.
func (b *cappedBuffer) Truncated() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truncated
}

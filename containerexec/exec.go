// Package containerexec runs processes in running containers for the CRI
// ExecSync and streaming Exec calls: it creates the containerd exec process
// with its FIFOs, drives it to its end (timeout, bounded drain of output held
// open by a background child, kill, cleanup, terminal resizes) and caps the
// output ExecSync keeps. The CRI handlers in package server only validate
// the request, find the running container and map the result.
package containerexec

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/streaming"
)

const (
	// MaxSyncOutput caps each of ExecSync's stdout and stderr; the rest of
	// the output is read and dropped (as containerd does).
	MaxSyncOutput = 16 << 20
	// MaxSyncResponse keeps stdout+stderr within the 16 MiB gRPC message
	// limit of the server and of kubelet's client (minus room for the
	// protobuf framing), so that a large output is truncated rather than
	// failing the call with ResourceExhausted.
	MaxSyncResponse = 16<<20 - 4<<10
	// initialSizeWait is how long a TTY exec waits for the client's first
	// terminal size, so that the process starts with the right size.
	initialSizeWait = 100 * time.Millisecond
	// execKillWait bounds the wait for an exec process to exit after SIGKILL.
	execKillWait = 10 * time.Second
	// execCleanupTimeout bounds deleting an exec process. The runc shim
	// itself waits up to 10s for the process output before deleting it.
	execCleanupTimeout = time.Minute
)

// Container is what an exec needs of a containerd container (containerd's
// own Container, as backend.Containerd hands it out, implements it).
type Container interface {
	Spec(ctx context.Context) (*oci.Spec, error)
	Task(ctx context.Context, attach cio.Attach) (containerd.Task, error)
}

var _ Container = containerd.Container(nil)

// Options describes one exec (ExecSync or streaming Exec).
type Options struct {
	Cmd    []string
	Stdin  io.Reader
	Stdout io.WriteCloser // nil discards
	Stderr io.WriteCloser // nil discards; unused with tty
	Tty    bool
	Resize <-chan streaming.TerminalSize
	// Timeout kills the process and fails the exec (0: none).
	Timeout time.Duration
}

// Driver runs exec processes in the containers of one daemon.
type Driver struct {
	// StateDir is the daemon's state directory: the FIFOs of a container's
	// exec processes are made under its per-container directory.
	StateDir string
	// DrainTimeout bounds the wait for the output after the process exited
	// (0: wait until the timeout or ctx ends).
	DrainTimeout time.Duration
}

// FIFORoot is where the FIFOs of a container's exec processes are made:
// under the container's state directory, so removing the container also
// removes what a crashed daemon left behind.
func FIFORoot(stateDir, containerID string) string {
	return filepath.Join(stateDir, "containers", containerID, "exec")
}

// Run runs opts.Cmd in the running container id (c) and returns its exit
// code once it exited and its output was drained (for at most the drain
// timeout: a background child may keep the output open). A non-zero exit
// code is not an error.
func (d Driver) Run(ctx context.Context, id string, c Container, opts Options) (uint32, error) {
	spec, err := c.Spec(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading spec of container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("container %s has no task: %w", id, errdefs.ErrFailedPrecondition)
		}
		return 0, fmt.Errorf("loading task of container %s: %w", id, err)
	}
	if spec.Process == nil {
		return 0, fmt.Errorf("container %s has no process in its spec: %w", id, errdefs.ErrFailedPrecondition)
	}
	pspec := spec.Process
	pspec.Args = opts.Cmd
	pspec.CommandLine = ""
	pspec.Terminal = opts.Tty
	pspec.ConsoleSize = nil
	if opts.Tty {
		pspec.Env = setEnv(pspec.Env, "TERM", "xterm")
		if opts.Resize != nil {
			var sz streaming.TerminalSize
			sz, opts.Resize = firstSize(opts.Resize, initialSizeWait)
			if sz.Width > 0 && sz.Height > 0 {
				pspec.ConsoleSize = &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
			}
		}
	}

	execID := newID()
	eio, err := containerio.NewExecIO(FIFORoot(d.StateDir, id), execID, opts.Tty, opts.Stdin != nil)
	if err != nil {
		return 0, fmt.Errorf("creating exec IO: %w", err)
	}
	proc, err := task.Exec(ctx, execID, pspec, eio.Creator())
	if err != nil {
		_ = eio.Close()
		return 0, fmt.Errorf("creating exec process in container %s: %w", id, err)
	}
	klog.V(4).InfoS("Exec process created", "containerID", id, "execID", execID, "cmd", opts.Cmd, "tty", opts.Tty)
	ioDone := eio.Attach(containerio.AttachOptions{
		Stdin:     opts.Stdin,
		Stdout:    opts.Stdout,
		Stderr:    opts.Stderr,
		Tty:       opts.Tty,
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
		timeout:      opts.Timeout,
		drainTimeout: d.DrainTimeout,
		resize:       opts.Resize,
	}.run(ctx)
}

// SyncResult is the outcome of an ExecSync.
type SyncResult struct {
	Stdout, Stderr []byte
	ExitCode       uint32
	// Truncated reports that output was dropped to fit the caps.
	Truncated bool
}

// Sync runs cmd in the running container id (c) like Run, keeping its
// output: each stream capped at MaxSyncOutput, both together at
// MaxSyncResponse (stdout first).
func (d Driver) Sync(ctx context.Context, id string, c Container, cmd []string, timeout time.Duration) (SyncResult, error) {
	stdout := newCappedBuffer(MaxSyncOutput)
	stderr := newCappedBuffer(MaxSyncOutput)
	code, err := d.Run(ctx, id, c, Options{
		Cmd:     cmd,
		Stdout:  stdout,
		Stderr:  stderr,
		Timeout: timeout,
	})
	if err != nil {
		return SyncResult{}, err
	}
	out, errOut, trimmed := fitOutput(stdout.Bytes(), stderr.Bytes(), MaxSyncResponse)
	return SyncResult{
		Stdout:    out,
		Stderr:    errOut,
		ExitCode:  code,
		Truncated: trimmed || stdout.Truncated() || stderr.Truncated(),
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

// newID is a random exec process ID.
func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
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

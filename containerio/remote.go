package containerio

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"
	"k8s.io/klog/v2"
)

// Remote is an output writer outside the daemon: the log writer the
// containerd shim runs (package shimlog). When a ContainerIO uses one, the
// daemon opens no FIFO: containerd gets a log URI, and Attach, ReopenLog,
// Wait and Close are forwarded to the Remote.
type Remote interface {
	// NewTaskIO prepares a new task's IO: its Config is the log URI given
	// to containerd.
	NewTaskIO() (cio.IO, error)
	// AttachTaskIO re-attaches to the IO of an existing task whose stdout is
	// a log URI (after a daemon restart).
	AttachTaskIO(fifos *cio.FIFOSet) (cio.IO, error)
	// Attach serves CRI Attach (output only) until the output ends, ctx is
	// done or the client is detached; it closes opts.Stdout/Stderr at the end.
	Attach(ctx context.Context, opts AttachOptions) error
	// ReopenLog reopens the log file (CRI ReopenContainerLog).
	ReopenLog(ctx context.Context) error
	// Wait reports whether the output ended (log flushed and closed) within
	// timeout (<= 0: the Remote's own bound).
	Wait(timeout time.Duration) bool
	// Close ends the daemon's use of the Remote (attached clients are
	// detached); the writer itself runs on.
	Close() error
}

// IsLogURI reports whether a task's stdout is a log URI (binary://,
// binary-v2://, file://) rather than a FIFO path.
func IsLogURI(stdout string) bool {
	u, err := url.Parse(stdout)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "binary", "binary-v2", "file":
		return true
	}
	return false
}

// useRemoteForNew says whether Creator hands the task to the Remote.
//
// A container with stdin and no terminal keeps the FIFOs: the runc shim
// (containerd-shim-runc-v2, cmd/containerd-shim-runc-v2/process/io.go)
// gives a task whose stdout is a binary:// URI a binaryIO, whose Stdin() is
// nil and whose Set(cmd) sets only the runc command's stdout and stderr, so
// runc starts the process with /dev/null as stdin; and copyPipes, the only
// code that copies the stdin FIFO into the process, runs only for fifo://
// and file:// outputs. The stdin FIFO the shim opens (Init.openStdin) is
// then only held for CloseIO: nothing written to it would ever reach the
// process. With a terminal the shim copies the stdin FIFO into the console
// (runc/platform.go, CopyConsole) whatever the output URI, so such a
// container gets the log URI for its output and a stdin FIFO.
func (c *ContainerIO) useRemoteForNew() bool {
	return c.cfg.Remote != nil && c.cfg.UseRemote && (!c.cfg.Stdin || c.cfg.Tty)
}

// activeRemote returns the Remote the IO was started with, or nil.
func (c *ContainerIO) activeRemote() Remote {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remoteIO == nil {
		return nil
	}
	return c.cfg.Remote
}

// startRemoteLocked starts the IO through the Remote: for a new task
// (existing nil) or by re-attaching to one. c.mu is held; start checked that
// the IO is neither closed nor started.
func (c *ContainerIO) startRemoteLocked(existing *cio.FIFOSet) error {
	if c.cfg.Remote == nil {
		return fmt.Errorf("container %s: the task's output goes to %q, but no shim log writer is configured", c.cfg.ID, existing.Stdout)
	}
	var (
		tio cio.IO
		err error
	)
	if existing == nil {
		tio, err = c.cfg.Remote.NewTaskIO()
	} else {
		tio, err = c.cfg.Remote.AttachTaskIO(existing)
	}
	if err != nil {
		return fmt.Errorf("container %s: %w", c.cfg.ID, err)
	}
	fifos := tio.Config()
	stdin, cancel, err := c.openRemoteStdin(existing)
	if err != nil {
		if existing == nil {
			_ = tio.Close()
		}
		return err
	}
	if stdin != nil {
		fifos.Stdin = c.fifos.Stdin
		if existing != nil {
			fifos.Stdin = existing.Stdin
		}
	}
	c.started = true
	c.remoteIO = tio
	c.fifos = fifos
	c.cancelOpen = cancel
	c.stdinMu.Lock()
	c.stdin = stdin
	c.stdinClosed = stdin == nil
	c.stdinMu.Unlock()
	c.stdout.Close()
	c.stderr.Close()
	c.remoteErrsDone = c.followRemoteErrors()
	klog.V(4).InfoS("Container IO handed to the shim log writer", "containerID", c.cfg.ID, "reattach", existing != nil,
		"stdout", c.fifos.Stdout, "stdin", c.fifos.Stdin)
	return nil
}

// openRemoteStdin opens the daemon's side of the stdin FIFO of a task whose
// output goes to the Remote: for a new task (existing nil) when the
// container has stdin, the FIFO is created in FIFODir and opened without
// waiting for the shim; for a task being re-attached, the FIFO the task
// has, if any (nil when the shim no longer reads it: the container's stdin
// was closed).
func (c *ContainerIO) openRemoteStdin(existing *cio.FIFOSet) (io.WriteCloser, context.CancelFunc, error) {
	if existing != nil {
		if existing.Stdin == "" {
			return nil, nil, nil
		}
		w, err := openExistingWriter(existing.Stdin)
		if err != nil {
			return nil, nil, fmt.Errorf("container %s stdin: %w", c.cfg.ID, err)
		}
		if w == nil {
			klog.V(2).InfoS("Stdin of the container was closed while the daemon was down", "containerID", c.cfg.ID)
			return nil, nil, nil
		}
		return w, nil, nil
	}
	if !c.cfg.Stdin {
		return nil, nil, nil
	}
	if err := os.MkdirAll(c.cfg.FIFODir, fifoDirMode); err != nil {
		return nil, nil, fmt.Errorf("creating FIFO directory of container %s: %w", c.cfg.ID, err)
	}
	if err := makeFIFOs(cio.Config{Stdin: c.fifos.Stdin}); err != nil {
		return nil, nil, fmt.Errorf("creating stdin FIFO of container %s: %w", c.cfg.ID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := openPendingWriter(ctx, c.fifos.Stdin)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("container %s stdin: %w", c.cfg.ID, err)
	}
	return w, cancel, nil
}

// attachRemote serves Attach for an IO whose output goes to the Remote: the
// output comes from the Remote, the client's stdin goes to the container's
// stdin FIFO (held by the daemon), with the same rules as Attach.
func (c *ContainerIO) attachRemote(ctx context.Context, r Remote, opts AttachOptions) error {
	if opts.Stdin == nil || !c.hasStdin() {
		return r.Attach(ctx, AttachOptions{Stdout: opts.Stdout, Stderr: opts.Stderr, Tty: opts.Tty})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	outputs := opts.Stdout != nil || (opts.Stderr != nil && !opts.Tty && !c.cfg.Tty)
	var stop atomic.Bool // set when attachRemote returns: stdin data arriving later is dropped
	defer stop.Store(true)
	var detached atomic.Bool
	stdinOnce := (opts.StdinOnce || c.cfg.StdinOnce) && !opts.Tty
	attached := make(chan struct{})
	var attachedOnce sync.Once
	go func() {
		// Stdin only once the output reaches the client: what the
		// container answers to it is not missed.
		select {
		case <-attached:
		case <-ctx.Done():
			return
		}
		switch c.pumpStdin(opts, stdinOnce, &stop) {
		case stdinStopped:
			return
		case stdinClosed:
			if outputs {
				return // attached until the output ends
			}
		}
		detached.Store(true)
		cancel()
	}()
	// Without outputs, the Remote waits for the end of the output.
	err := r.Attach(ctx, AttachOptions{Stdout: opts.Stdout, Stderr: opts.Stderr, Tty: opts.Tty,
		Attached: func() { attachedOnce.Do(func() { close(attached) }) }})
	if detached.Load() {
		return nil
	}
	return err
}

const remoteRequestTimeout = 10 * time.Second

func (c *ContainerIO) reopenRemote(r Remote) error {
	if c.isClosed() {
		return fmt.Errorf("reopening log of container %s: %w", c.cfg.ID, ErrClosed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteRequestTimeout)
	defer cancel()
	if err := r.ReopenLog(ctx); err != nil {
		return fmt.Errorf("reopening log of container %s: %w", c.cfg.ID, err)
	}
	return nil
}

func (c *ContainerIO) waitRemote(r Remote, timeout time.Duration) bool {
	select {
	case <-c.done:
		return true
	default:
	}
	if !r.Wait(timeout) {
		return false
	}
	c.finish()
	return true
}

// followRemoteErrors accounts the log write errors of the remote writer in
// cfg.LogErrors (when the Remote counts them): they are part of its Total
// (the daemon's metric) from now on, and reported in the daemon's log like
// its own, at most once per container per interval, whenever the reporter
// reads them (LogErrorReporter.PollRemotes, one loop for every container).
// The returned function stops the accounting and keeps the last count in
// the Total.
func (c *ContainerIO) followRemoteErrors() func() {
	src, ok := c.cfg.Remote.(RemoteErrorCounter)
	if !ok {
		return nil
	}
	_, untrack := c.cfg.LogErrors.trackRemote(c.cfg.LogErrors.ForContainer(c.cfg.ID), src)
	return untrack
}

func (c *ContainerIO) closeRemote() error {
	c.mu.Lock()
	cancel := c.cancelOpen
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	c.closeStdin()
	err := c.cfg.Remote.Close()
	c.mu.Lock()
	errsDone := c.remoteErrsDone
	c.mu.Unlock()
	if errsDone != nil {
		errsDone()
	}
	c.finish()
	if err != nil {
		return fmt.Errorf("closing IO of container %s: %w", c.cfg.ID, err)
	}
	return nil
}

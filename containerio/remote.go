package containerio

import (
	"context"
	"fmt"
	"net/url"
	"sync"
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
func (c *ContainerIO) useRemoteForNew() bool {
	return c.cfg.Remote != nil && c.cfg.UseRemote && !c.cfg.Stdin
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
	c.started = true
	c.remoteIO = tio
	c.fifos = tio.Config()
	c.stdout.close()
	c.stderr.close()
	c.remoteErrsDone = c.followRemoteErrors()
	klog.V(4).InfoS("Container IO handed to the shim log writer", "containerID", c.cfg.ID, "reattach", existing != nil, "stdout", c.fifos.Stdout)
	return nil
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

// remoteErrorPollInterval is how often the log write errors of a remote
// writer are read to report them in the daemon's log (the metric reads them
// when it is collected).
const remoteErrorPollInterval = 10 * time.Second

// followRemoteErrors accounts the log write errors of the remote writer in
// cfg.LogErrors (when the Remote counts them): they are part of its Total
// (the daemon's metric) from now on, and reported in the daemon's log like
// its own, at most once per container per interval. The returned function
// stops the polling and keeps the last count in the Total.
func (c *ContainerIO) followRemoteErrors() func() {
	src, ok := c.cfg.Remote.(RemoteErrorCounter)
	if !ok {
		return nil
	}
	refresh, untrack := c.cfg.LogErrors.trackRemote(c.cfg.LogErrors.ForContainer(c.cfg.ID), src)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(remoteErrorPollInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				refresh()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-stopped
			untrack()
		})
	}
}

func (c *ContainerIO) closeRemote() error {
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

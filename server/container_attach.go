package server

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/containerexec"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/streaming"
)

// Attach checks that the container runs and returns the streaming URL that
// attaches to it (see streamRuntime.Attach).
func (s *Service) Attach(ctx context.Context, r *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("streaming server: %w", errdefs.ErrUnavailable)
	}
	c, err := s.runningContainer(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	return s.stream.GetAttach(&runtimeapi.AttachRequest{
		ContainerId: c.ID,
		Stdin:       r.GetStdin(),
		Tty:         r.GetTty(),
		Stdout:      r.GetStdout(),
		Stderr:      r.GetStderr(),
	})
}

// attachContainer connects the client's streams to the container's IO until
// the container output ends, the client is detached or ctx ends.
func (s *Service) attachContainer(ctx context.Context, id string, stdin io.Reader, stdout, stderr io.WriteCloser, tty bool, resize <-chan streaming.TerminalSize) error {
	c, err := s.runningContainer(id)
	if err != nil {
		return err
	}
	cio := c.IO()
	if cio == nil {
		return fmt.Errorf("container %s has no IO to attach to: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	task, err := c.Container.Task(ctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s has no task: %w", c.ID, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("loading task of container %s: %w", c.ID, err)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(done)
		cancel()
		wg.Wait()
	}()
	if resize != nil {
		wg.Go(func() {
			containerexec.ResizeLoop(ctx, resize, done, func(w, h uint32) error { return task.Resize(ctx, w, h) }, c.ID)
		})
	}
	klog.V(4).InfoS("Attaching to container", "containerID", c.ID, "stdin", stdin != nil, "tty", tty)
	err = cio.Attach(ctx, containerio.AttachOptions{
		Stdin:     stdin,
		Stdout:    stdout,
		Stderr:    stderr,
		Tty:       tty,
		StdinOnce: c.Config.GetStdinOnce(),
		CloseStdin: func() error {
			cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer ccancel()
			return task.CloseIO(cctx, containerd.WithStdinCloser)
		},
	})
	klog.V(4).InfoS("Detached from container", "containerID", c.ID, "err", err)
	if err != nil {
		return fmt.Errorf("attaching to container %s: %w", c.ID, err)
	}
	return nil
}

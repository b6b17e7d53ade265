package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
)

// RemoveContainer force-stops the container if needed and removes it, its
// snapshot, its FIFOs and its name. A missing container is not an error.
func (s *Service) RemoveContainer(ctx context.Context, r *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &runtimeapi.RemoveContainerResponse{}, nil
		}
		return nil, err
	}
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Service) removeContainer(ctx context.Context, c *container.Container) error {
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return fmt.Errorf("stopping container %s before removal: %w", c.ID, err)
	}
	c.StopMu.Lock()
	defer c.StopMu.Unlock()
	// A start in progress owns the task and the IO: removing under it
	// would delete the task it is starting.
	var starting bool
	c.UpdateMemory(func(st *container.Status) {
		if starting = st.Starting; !starting {
			st.Removing = true
		}
	})
	if starting {
		return fmt.Errorf("container %s is starting: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	// Usually the exit handler already deleted the task; containerd refuses
	// to delete a container that still has one (FailedPrecondition).
	err := c.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	if errdefs.IsFailedPrecondition(err) {
		if task, terr := c.Container.Task(ctx, nil); terr == nil {
			if _, derr := task.Delete(ctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
				c.UpdateMemory(func(st *container.Status) { st.Removing = false })
				return fmt.Errorf("deleting task of %s: %w", c.ID, derr)
			}
		}
		err = c.Container.Delete(ctx, containerd.WithSnapshotCleanup)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		c.UpdateMemory(func(st *container.Status) { st.Removing = false })
		return fmt.Errorf("deleting containerd container %s: %w", c.ID, err)
	}
	handler := "" // the default runtime, if the pod is gone
	if sb, serr := s.sandboxes.Get(c.SandboxID); serr == nil {
		handler = sb.RuntimeHandler
	}
	s.reapShims(c.ID, handler)
	if cio := c.IO(); cio != nil {
		cio.Close()
	}
	for _, d := range []string{filepath.Join(s.config.RootDir, "containers", c.ID), filepath.Join(s.config.StateDir, "containers", c.ID)} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	s.containers.Delete(c.ID)
	s.containerNames.ReleaseByID(c.ID)
	s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return nil
}

// removeSandboxContainers removes every container of a sandbox.
func (s *Service) removeSandboxContainers(ctx context.Context, sandboxID string) error {
	for _, c := range s.containers.ListBySandbox(sandboxID) {
		if err := s.removeContainer(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

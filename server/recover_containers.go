package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// recoverContainers rebuilds the container store from containerd and the
// checkpointed status files: running containers get their output pipes
// re-opened (the shim kept them open, so nothing written meanwhile is lost),
// containers that exited while the daemon was down get their exit recorded
// from the task, and containers whose creation never finished are removed.
func (s *Service) recoverContainers(ctx context.Context) error {
	ctrs, err := s.ctrdState.Containers(ctx, fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindContainer))
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	for _, cc := range ctrs {
		if err := s.recoverContainer(ctx, cc); err != nil {
			klog.ErrorS(err, "Recovering container", "containerID", cc.ID())
		}
	}
	for _, base := range []string{filepath.Join(s.config.RootDir, "containers"), filepath.Join(s.config.StateDir, "containers")} {
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if c, err := s.containers.Get(e.Name()); err == nil && c.ID == e.Name() {
				continue
			}
			klog.InfoS("Removing files of unknown container", "dir", filepath.Join(base, e.Name()))
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	return nil
}

func (s *Service) recoverContainer(ctx context.Context, cc containerd.Container) error {
	md, err := loadExtension[container.Metadata](ctx, cc, container.MetadataExtension)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.config.RootDir, "containers", md.ID)
	st, found, err := container.LoadStatus(dir)
	if err != nil || !found {
		// CreateContainer never finished: remove what it made.
		klog.InfoS("Removing container left half-made by a previous run", "containerID", md.ID)
		if t, err := cc.Task(ctx, nil); err == nil {
			_, _ = t.Delete(ctx, containerd.WithProcessKill)
		}
		if err := cc.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		_ = os.RemoveAll(dir)
		return nil
	}
	c := container.New(*md, dir, st)
	c.Container = cc
	switch st.State() {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		// The daemon may have died inside StartContainer: a task may exist.
		if t, err := cc.Task(ctx, nil); err == nil {
			_, _ = t.Delete(ctx, containerd.WithProcessKill)
		}
	case runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_UNKNOWN:
		cio, err := s.newContainerIO(c)
		if err != nil {
			return err
		}
		task, err := cc.Task(ctx, cio.Attacher())
		switch {
		case errdefs.IsNotFound(err):
			cio.Close()
			_ = c.Update(func(st *container.Status) error {
				st.Pid = 0
				st.FinishedAt = time.Now().UnixNano()
				st.ExitCode = 255
				st.Reason = "Unknown"
				st.Message = "container task disappeared while cri-containerd was down"
				return nil
			})
		case err != nil:
			cio.Close()
			return fmt.Errorf("loading task: %w", err)
		default:
			c.SetIO(cio)
			ts, err := task.Status(ctx)
			if err != nil {
				return fmt.Errorf("task status: %w", err)
			}
			if ts.Status == containerd.Stopped {
				if err := s.containers.Add(c); err != nil {
					return err
				}
				s.containerNames.Reserve(md.Name, md.ID) //nolint:errcheck
				s.handleContainerExit(ctx, md.ID, 0, ts.ExitStatus, ts.ExitTime)
				return nil
			}
		}
	}
	if err := s.containerNames.Reserve(md.Name, md.ID); err != nil {
		klog.ErrorS(err, "Recovered container name conflict", "containerID", md.ID)
	}
	if err := s.containers.Add(c); err != nil {
		return err
	}
	klog.V(2).InfoS("Recovered container", "containerID", md.ID, "state", c.Status().State().String())
	return nil
}

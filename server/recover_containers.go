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
	"github.com/cri-containerd/cri-containerd/extension"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// recoverContainers rebuilds the container store from containerd and the
// checkpointed status files: running containers get their output pipes
// re-opened (the shim kept them open, so nothing written meanwhile is lost),
// containers that exited while the daemon was down get their exit recorded
// from the task, and containers whose creation never finished (no status
// file, no task) are removed. A container whose status file is unreadable
// or missing is recovered from its task; one whose metadata is unreadable,
// or whose recovery fails or times out, is kept UNKNOWN for kubelet to stop
// and remove. Directories of IDs that containerd does not have are removed.
func (s *Service) recoverContainers(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, s.recoveryTimeout())
	ctrs, err := s.deps.Containerd.Containers(lctx, fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindContainer))
	cancel()
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	s.recoverAll(ctx, "container", ctrs, s.recoverContainer, s.keepContainer)
	if ctx.Err() != nil {
		return ctx.Err() // nothing is removed on a cancelled recovery
	}
	known := listedIDs(ctrs)
	for _, base := range []string{filepath.Join(s.config.RootDir, "containers"), filepath.Join(s.config.StateDir, "containers")} {
		entries, _ := os.ReadDir(base)
		for _, e := range entries {
			if known[e.Name()] {
				continue
			}
			klog.InfoS("Removing files of a container containerd does not have", "dir", filepath.Join(base, e.Name()))
			_ = os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	return nil
}

// recoverContainer recovers one container from its metadata, its status
// file and its task. It does not touch the stores: the result's commit does.
func (s *Service) recoverContainer(ctx context.Context, cc containerd.Container) (recoveryResult, error) {
	md, err := s.containerMetadata(ctx, cc)
	if err != nil {
		// Without its metadata the output cannot be re-attached: kubelet
		// stops and removes it. Its task is left alone until then.
		klog.ErrorS(err, "Container metadata is unreadable; keeping the container UNKNOWN", "containerID", cc.ID())
		return recoveryResult{commit: func() { s.keepContainer(cc) }}, nil
	}
	dir := filepath.Join(s.config.RootDir, "containers", md.ID)
	st, found, err := container.LoadStatus(dir)
	if err != nil || !found {
		// CreateContainer makes the directory before the containerd
		// container: without it this root never knew the container (another
		// daemon's, or a lost root) and nothing of it is removed.
		_, derr := os.Stat(dir)
		var halfMade bool
		st, halfMade, err = s.statusFromTask(ctx, cc, md, err, derr == nil)
		if err != nil {
			return recoveryResult{}, err
		}
		if halfMade {
			// CreateContainer never finished: remove what it made.
			klog.InfoS("Removing container left half-made by a previous run", "containerID", md.ID)
			if err := cc.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
				return recoveryResult{}, fmt.Errorf("removing half-made container: %w", err)
			}
			_ = os.RemoveAll(dir)
			_ = os.RemoveAll(filepath.Join(s.config.StateDir, "containers", md.ID))
			return recoveryResult{}, nil
		}
	}
	c := container.New(*md, dir, st)
	c.Container = cc
	state := st.State()
	if state == runtimeapi.ContainerState_CONTAINER_CREATED {
		// The daemon may have died inside StartContainer: a task may exist.
		// One whose process was started is the start that went through
		// (the client may have seen it fail): the container is running, or
		// ran and exited, and is recovered as such. Only a task that was
		// never started is deleted, so that StartContainer can be retried.
		if t, err := cc.Task(ctx, nil); err == nil {
			ts, serr := t.Status(ctx)
			if serr == nil && ts.Status != containerd.Created && ts.Status != containerd.Unknown {
				klog.InfoS("Container was started by a daemon that died inside StartContainer; adopting its task", "containerID", md.ID, "task", ts.Status)
				if err := c.Update(func(st *container.Status) error {
					st.Pid = t.Pid()
					st.StartedAt = time.Now().UnixNano()
					return nil
				}); err != nil {
					return recoveryResult{}, fmt.Errorf("checkpointing the adopted start: %w", err)
				}
				state = runtimeapi.ContainerState_CONTAINER_RUNNING
			} else {
				_, _ = t.Delete(ctx, containerd.WithProcessKill)
			}
		}
	}
	switch {
	case state == runtimeapi.ContainerState_CONTAINER_CREATED:
	case state == runtimeapi.ContainerState_CONTAINER_RUNNING,
		state == runtimeapi.ContainerState_CONTAINER_UNKNOWN && st.FinishedAt == 0:
		cio, err := s.newContainerIO(c)
		if err != nil {
			return recoveryResult{}, err
		}
		task, err := cc.Task(ctx, cio.Attacher())
		switch {
		case errdefs.IsNotFound(err):
			cio.Close()
			_ = c.Update(func(st *container.Status) error {
				st.Pid = 0
				if st.PendingExitAt != 0 {
					// The exit was seen and checkpointed; the daemon died
					// while deleting the task or draining its output.
					st.FinishedAt, st.ExitCode = st.PendingExitAt, st.PendingExitCode
					st.Reason = container.ExitReason(st.OOMKilled, uint32(st.PendingExitCode))
					st.Unknown = false
					return nil
				}
				st.FinishedAt = time.Now().UnixNano()
				st.ExitCode = 255
				st.Reason = "Unknown"
				st.Message = "container task disappeared while cri-containerd was down"
				return nil
			})
		case err != nil:
			cio.Close()
			return recoveryResult{}, fmt.Errorf("loading task: %w", err)
		default:
			c.SetIO(cio)
			ts, err := task.Status(ctx)
			if err != nil {
				cio.Close()
				return recoveryResult{}, fmt.Errorf("task status: %w", err)
			}
			if ts.Status == containerd.Stopped {
				// Exited while the daemon was down: recorded before the
				// container is published, so no client sees it RUNNING.
				s.ctrs().Finish(ctx, c, ts.ExitStatus, ts.ExitTime)
			}
		}
	}
	return recoveryResult{
		commit: func() { s.publishRecoveredContainer(c, true) },
		abort: func() {
			if cio := c.IO(); cio != nil {
				cio.Close()
			}
		},
	}, nil
}

// statusFromTask rebuilds the status of a container whose status file is
// unreadable (readErr) or missing from its task, and checkpoints it. With
// no task, a missing file in an existing directory (ownDir) means
// CreateContainer never finished (halfMade); otherwise created cannot be
// told from exited: UNKNOWN.
func (s *Service) statusFromTask(ctx context.Context, cc containerd.Container, md *container.Metadata, readErr error, ownDir bool) (container.Status, bool, error) {
	if readErr != nil {
		klog.ErrorS(readErr, "Container status file is unreadable; rebuilding the status from the task", "containerID", md.ID)
	} else {
		klog.InfoS("Container has no status file; rebuilding the status from the task, if any", "containerID", md.ID)
	}
	st := container.Status{CreatedAt: md.CreatedAt}
	task, err := cc.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		if readErr == nil && ownDir {
			return st, true, nil
		}
		// Created or exited: UNKNOWN, with no process to wait for.
		st.Unknown = true
		st.FinishedAt = time.Now().UnixNano()
		st.ExitCode = 255
		st.Reason = "Unknown"
		st.Message = "container status was lost or unreadable after a restart and the container has no task"
	case err != nil:
		return st, false, fmt.Errorf("loading task: %w", err)
	default:
		ts, err := task.Status(ctx)
		if err != nil {
			return st, false, fmt.Errorf("task status: %w", err)
		}
		if ts.Status == containerd.Created {
			break // StartContainer did not finish: CREATED (its task is deleted)
		}
		// Started: its start time is not known, its creation time is the best bound.
		st.StartedAt = md.CreatedAt
		st.Pid = task.Pid()
	}
	c := container.New(*md, filepath.Join(s.config.RootDir, "containers", md.ID), container.Status{})
	if err := c.Update(func(s *container.Status) error { *s = st; return nil }); err != nil {
		klog.ErrorS(err, "Checkpointing rebuilt container status", "containerID", md.ID)
	}
	return st, false, nil
}

// keepContainer publishes a container that could not be recovered, so that
// kubelet stops and removes it: its checkpointed status if readable, UNKNOWN
// unless that status says it exited. Its metadata comes from its containerd
// record, rebuilt from the spec when unreadable. No output is collected.
func (s *Service) keepContainer(cc containerd.Container) {
	md, err := s.containerMetadata(context.Background(), cc)
	readable := err == nil
	if !readable {
		md = rebuildContainerMetadata(cc)
	}
	dir := filepath.Join(s.config.RootDir, "containers", md.ID)
	st, found, err := container.LoadStatus(dir)
	if err != nil || !found {
		st = container.Status{CreatedAt: md.CreatedAt}
	}
	if st.FinishedAt == 0 {
		st.Unknown = true // in memory only: the next start looks again
	}
	c := container.New(*md, dir, st)
	c.Container = cc
	s.publishRecoveredContainer(c, readable)
}

// publishRecoveredContainer adds a recovered container to the store. A
// container rebuilt without its metadata does not know its name's attempt
// and does not hold the name.
func (s *Service) publishRecoveredContainer(c *container.Container, reserveName bool) {
	if reserveName {
		if err := s.containerNames.Reserve(c.Name, c.ID); err != nil {
			klog.ErrorS(err, "Recovered container name conflict", "containerID", c.ID)
		}
	}
	if err := s.containers.Add(c); err != nil {
		klog.ErrorS(err, "Adding recovered container", "containerID", c.ID)
		return
	}
	klog.V(2).InfoS("Recovered container", "containerID", c.ID, "state", c.Status().State().String())
}

// containerMetadata decodes a container's metadata from its listed
// containerd record (no call to containerd).
func (s *Service) containerMetadata(ctx context.Context, cc containerd.Container) (*container.Metadata, error) {
	rec, err := cc.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("reading container record: %w", err)
	}
	md, err := extension.Decode[container.Metadata](rec.Extensions, container.MetadataExtension)
	if err != nil {
		return nil, err
	}
	if md.ID != cc.ID() {
		return nil, fmt.Errorf("metadata of container %s names ID %q", cc.ID(), md.ID)
	}
	return md, nil
}

// rebuildContainerMetadata makes the metadata of a container whose own
// cannot be read from its containerd record: sandbox from the label, names
// and image from the spec annotations.
func rebuildContainerMetadata(cc containerd.Container) *container.Metadata {
	rec, _ := cc.Info(context.Background(), containerd.WithoutRefreshedMetadata)
	ann := listedSpec(rec).Annotations
	sbID := rec.Labels[sandbox.LabelSandboxID]
	if sbID == "" {
		sbID = ann[annSandboxID]
	}
	md := &container.Metadata{
		Version:   1,
		ID:        cc.ID(),
		SandboxID: sbID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: ann[annContainerName]},
			Image:    &runtimeapi.ImageSpec{Image: ann[annImageName]},
		},
		ImageName: ann[annImageName],
		CreatedAt: rec.CreatedAt.UnixNano(),
	}
	md.Name = containerName(md.Config.Metadata, &runtimeapi.PodSandboxMetadata{
		Name: ann[annSandboxName], Namespace: ann[annSandboxNamespace], Uid: ann[annSandboxUID],
	})
	return md
}

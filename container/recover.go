package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/extension"
	"github.com/cri-containerd/cri-containerd/recovery"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// Recover rebuilds the container store from containerd and the
// checkpointed status files: running containers get their output pipes
// re-opened (the shim kept them open, so nothing written meanwhile is lost),
// containers that exited while the daemon was down get their exit recorded
// from the task, and containers whose creation never finished (no status
// file, no task) are removed. A container whose status file is unreadable
// or missing is recovered from its task; one whose metadata is unreadable,
// or whose recovery fails or times out, is kept UNKNOWN for kubelet to stop
// and remove. Directories of IDs that containerd does not have are removed.
// Run it after the sandboxes were recovered.
func (c *Controller) Recover(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, c.o.Recovery.TimeoutOrDefault())
	ctrs, err := c.o.Deps.Containerd.Containers(lctx, fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindContainer))
	cancel()
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	c.o.Recovery.All(ctx, "container", ctrs, c.recoverOne, c.keep)
	if ctx.Err() != nil {
		return ctx.Err() // nothing is removed on a cancelled recovery
	}
	known := recovery.IDs(ctrs)
	for _, base := range []string{filepath.Join(c.o.Config.RootDir, "containers"), filepath.Join(c.o.Config.StateDir, "containers")} {
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

// recoverOne recovers one container from its metadata, its status file and
// its task. It does not touch the stores: the result's commit does.
func (c *Controller) recoverOne(ctx context.Context, cc containerd.Container) (recovery.Result, error) {
	md, err := decodeMetadata(ctx, cc)
	if err != nil {
		// Without its metadata the output cannot be re-attached: kubelet
		// stops and removes it. Its task is left alone until then.
		klog.ErrorS(err, "Container metadata is unreadable; keeping the container UNKNOWN", "containerID", cc.ID())
		return recovery.Result{Commit: func() { c.keep(cc) }}, nil
	}
	dir := filepath.Join(c.o.Config.RootDir, "containers", md.ID)
	st, found, err := LoadStatus(dir)
	if err != nil || !found {
		// Create makes the directory before the containerd container:
		// without it this root never knew the container (another daemon's,
		// or a lost root) and nothing of it is removed.
		_, derr := os.Stat(dir)
		var halfMade bool
		st, halfMade, err = c.statusFromTask(ctx, cc, md, err, derr == nil)
		if err != nil {
			return recovery.Result{}, err
		}
		if halfMade {
			// Create never finished: remove what it made.
			klog.InfoS("Removing container left half-made by a previous run", "containerID", md.ID)
			if err := cc.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
				return recovery.Result{}, fmt.Errorf("removing half-made container: %w", err)
			}
			_ = os.RemoveAll(dir)
			_ = os.RemoveAll(filepath.Join(c.o.Config.StateDir, "containers", md.ID))
			return recovery.Result{}, nil
		}
	}
	ctr := New(*md, dir, st)
	ctr.Container = cc
	state := st.State()
	if state == runtimeapi.ContainerState_CONTAINER_CREATED {
		// The daemon may have died inside Start: a task may exist. One
		// whose process was started is the start that went through (the
		// client may have seen it fail): the container is running, or ran
		// and exited, and is recovered as such. Only a task that was never
		// started is deleted, so that Start can be retried.
		if t, err := cc.Task(ctx, nil); err == nil {
			ts, serr := t.Status(ctx)
			if serr == nil && ts.Status != containerd.Created && ts.Status != containerd.Unknown {
				klog.InfoS("Container was started by a daemon that died inside StartContainer; adopting its task", "containerID", md.ID, "task", ts.Status)
				if err := ctr.Update(func(st *Status) error {
					st.Pid = t.Pid()
					st.StartedAt = c.now().UnixNano()
					return nil
				}); err != nil {
					return recovery.Result{}, fmt.Errorf("checkpointing the adopted start: %w", err)
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
		cio, err := c.NewIO(ctr)
		if err != nil {
			return recovery.Result{}, err
		}
		task, err := cc.Task(ctx, cio.Attacher())
		switch {
		case errdefs.IsNotFound(err):
			cio.Close()
			_ = ctr.Update(func(st *Status) error {
				st.Pid = 0
				if st.PendingExitAt != 0 {
					// The exit was seen and checkpointed; the daemon died
					// while deleting the task or draining its output.
					st.FinishedAt, st.ExitCode = st.PendingExitAt, st.PendingExitCode
					st.Reason = ExitReason(st.OOMKilled, uint32(st.PendingExitCode))
					st.Unknown = false
					return nil
				}
				st.FinishedAt = c.now().UnixNano()
				st.ExitCode = 255
				st.Reason = "Unknown"
				st.Message = "container task disappeared while cri-containerd was down"
				return nil
			})
		case err != nil:
			cio.Close()
			return recovery.Result{}, fmt.Errorf("loading task: %w", err)
		default:
			ctr.SetIO(cio)
			ts, err := task.Status(ctx)
			if err != nil {
				cio.Close()
				return recovery.Result{}, fmt.Errorf("task status: %w", err)
			}
			if ts.Status == containerd.Stopped {
				// Exited while the daemon was down: recorded before the
				// container is published, so no client sees it RUNNING.
				c.Finish(ctx, ctr, ts.ExitStatus, ts.ExitTime)
			}
		}
	}
	return recovery.Result{
		Commit: func() { c.publishRecovered(ctr, true) },
		Abort: func() {
			if cio := ctr.IO(); cio != nil {
				cio.Close()
			}
		},
	}, nil
}

// statusFromTask rebuilds the status of a container whose status file is
// unreadable (readErr) or missing from its task, and checkpoints it. With
// no task, a missing file in an existing directory (ownDir) means Create
// never finished (halfMade); otherwise created cannot be told from exited:
// UNKNOWN.
func (c *Controller) statusFromTask(ctx context.Context, cc containerd.Container, md *Metadata, readErr error, ownDir bool) (Status, bool, error) {
	if readErr != nil {
		klog.ErrorS(readErr, "Container status file is unreadable; rebuilding the status from the task", "containerID", md.ID)
	} else {
		klog.InfoS("Container has no status file; rebuilding the status from the task, if any", "containerID", md.ID)
	}
	st := Status{CreatedAt: md.CreatedAt}
	task, err := cc.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		if readErr == nil && ownDir {
			return st, true, nil
		}
		// Created or exited: UNKNOWN, with no process to wait for.
		st.Unknown = true
		st.FinishedAt = c.now().UnixNano()
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
			break // Start did not finish: CREATED (its task is deleted)
		}
		// Started: its start time is not known, its creation time is the best bound.
		st.StartedAt = md.CreatedAt
		st.Pid = task.Pid()
	}
	ctr := New(*md, filepath.Join(c.o.Config.RootDir, "containers", md.ID), Status{})
	if err := ctr.Update(func(s *Status) error { *s = st; return nil }); err != nil {
		klog.ErrorS(err, "Checkpointing rebuilt container status", "containerID", md.ID)
	}
	return st, false, nil
}

// keep publishes a container that could not be recovered, so that kubelet
// stops and removes it: its checkpointed status if readable, UNKNOWN unless
// that status says it exited. Its metadata comes from its containerd
// record, rebuilt from the spec when unreadable. No output is collected.
func (c *Controller) keep(cc containerd.Container) {
	md, err := decodeMetadata(context.Background(), cc)
	readable := err == nil
	if !readable {
		md = rebuildMetadata(cc)
	}
	dir := filepath.Join(c.o.Config.RootDir, "containers", md.ID)
	st, found, err := LoadStatus(dir)
	if err != nil || !found {
		st = Status{CreatedAt: md.CreatedAt}
	}
	if st.FinishedAt == 0 {
		st.Unknown = true // in memory only: the next start looks again
	}
	ctr := New(*md, dir, st)
	ctr.Container = cc
	c.publishRecovered(ctr, readable)
}

// publishRecovered adds a recovered container to the store. A container
// rebuilt without its metadata does not know its name's attempt and does
// not hold the name.
func (c *Controller) publishRecovered(ctr *Container, reserveName bool) {
	if reserveName {
		if err := c.o.Names.Reserve(ctr.Name, ctr.ID); err != nil {
			klog.ErrorS(err, "Recovered container name conflict", "containerID", ctr.ID)
		}
	}
	if err := c.o.Store.Add(ctr); err != nil {
		klog.ErrorS(err, "Adding recovered container", "containerID", ctr.ID)
		return
	}
	klog.V(2).InfoS("Recovered container", "containerID", ctr.ID, "state", ctr.Status().State().String())
}

// decodeMetadata decodes a container's metadata from its listed containerd
// record (no call to containerd).
func decodeMetadata(ctx context.Context, cc containerd.Container) (*Metadata, error) {
	rec, err := cc.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("reading container record: %w", err)
	}
	md, err := extension.Decode[Metadata](rec.Extensions, MetadataExtension)
	if err != nil {
		return nil, err
	}
	if md.ID != cc.ID() {
		return nil, fmt.Errorf("metadata of container %s names ID %q", cc.ID(), md.ID)
	}
	return md, nil
}

// rebuildMetadata makes the metadata of a container whose own cannot be
// read from its containerd record: sandbox from the label, names and image
// from the spec annotations (see Annotations).
func rebuildMetadata(cc containerd.Container) *Metadata {
	rec, _ := cc.Info(context.Background(), containerd.WithoutRefreshedMetadata)
	ann := recovery.ListedSpec(rec).Annotations
	sbID := rec.Labels[sandbox.LabelSandboxID]
	if sbID == "" {
		sbID = ann[AnnotationSandboxID]
	}
	md := &Metadata{
		Version:   1,
		ID:        cc.ID(),
		SandboxID: sbID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: ann[AnnotationContainerName]},
			Image:    &runtimeapi.ImageSpec{Image: ann[AnnotationImageName]},
		},
		ImageName: ann[AnnotationImageName],
		CreatedAt: rec.CreatedAt.UnixNano(),
	}
	md.Name = Name(md.Config.Metadata, &runtimeapi.PodSandboxMetadata{
		Name: ann[AnnotationSandboxName], Namespace: ann[AnnotationSandboxNamespace], Uid: ann[AnnotationSandboxUID],
	})
	return md
}

package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/extension"
	"github.com/cri-containerd/cri-containerd/recovery"
)

// Annotations of the pause container's spec (Annotations) that recovery
// rebuilds unreadable metadata from.
const (
	AnnotationName         = "io.kubernetes.cri.sandbox-name"
	AnnotationNamespace    = "io.kubernetes.cri.sandbox-namespace"
	AnnotationUID          = "io.kubernetes.cri.sandbox-uid"
	AnnotationLogDirectory = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationID           = "io.kubernetes.cri.sandbox-id"
)

// Recover rebuilds the sandbox store from containerd, through
// Options.Recovery (bounded, a deadline per sandbox):
//   - a sandbox whose RunPodSandbox finished gets its state from its pause
//     task (READY while it runs, NOTREADY with its exit otherwise);
//   - a sandbox whose RunPodSandbox never finished (the daemon died in the
//     middle) is cleaned up completely: pause task reaped, CNI DEL with the
//     ADD arguments, netns, files, container and any shim containerd
//     forgot; when that fails (e.g. no CNI config yet) it is kept NOTREADY,
//     its pause task reaped but its netns kept, so that StopPodSandbox and
//     RemovePodSandbox retry;
//   - a sandbox whose metadata cannot be read is never destroyed: it is
//     kept NOTREADY, rebuilt from its containerd record, with its netns and
//     files for kubelet to stop and remove; a pause process it still runs
//     is reaped (a NOTREADY sandbox has none);
//   - a sandbox whose recovery fails or runs out of time is kept NOTREADY.
//
// Directories of IDs containerd does not have are removed last: containerd's
// list is the judge, never the store.
func (c *Controller) Recover(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, c.o.Recovery.TimeoutOrDefault())
	ctrs, err := c.o.Deps.Containerd.Containers(lctx, fmt.Sprintf("labels.%q==%q", LabelKind, KindSandbox))
	cancel()
	if err != nil {
		return fmt.Errorf("listing sandbox containers: %w", err)
	}
	c.o.Recovery.All(ctx, "sandbox", ctrs, c.recoverOne, c.keep)
	if ctx.Err() != nil {
		return ctx.Err() // nothing is removed on a cancelled recovery
	}
	c.removeOrphanDirs(recovery.IDs(ctrs))
	return nil
}

// recoverOne recovers one sandbox from its metadata and its pause task. It
// does not touch the store: the result's commit does.
func (c *Controller) recoverOne(ctx context.Context, cc containerd.Container) (recovery.Result, error) {
	md, err := decodeMetadata(ctx, cc)
	if err != nil {
		klog.ErrorS(err, "Sandbox metadata is unreadable; keeping the sandbox NOTREADY, rebuilt from its containerd record", "podSandboxID", cc.ID())
		if err := reapPause(ctx, cc); err != nil {
			klog.ErrorS(err, "Reaping the pause task of a sandbox with unreadable metadata", "podSandboxID", cc.ID())
		}
		return recovery.Result{Commit: func() { c.keep(cc) }}, nil
	}
	if md.Phase != PhaseCreated {
		return c.recoverHalfMade(ctx, cc, md), nil
	}
	sb := New(*md)
	sb.Container = cc
	task, err := cc.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		sb.SetNotReady(255, c.now())
	case err != nil:
		return recovery.Result{}, fmt.Errorf("loading pause task: %w", err)
	default:
		st, err := task.Status(ctx)
		if err != nil {
			return recovery.Result{}, fmt.Errorf("pause task status: %w", err)
		}
		switch st.Status {
		case containerd.Running, containerd.Paused, containerd.Pausing, containerd.Created:
			sb.SetReady(task.Pid())
		default:
			code, at := st.ExitStatus, st.ExitTime
			if st.Status != containerd.Stopped {
				code, at = 255, c.now()
			}
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Deleting stopped pause task", "podSandboxID", md.ID)
			}
			sb.SetNotReady(code, at)
		}
	}
	return recovery.Result{Commit: func() { c.publishRecovered(sb, true) }}, nil
}

// recoverHalfMade cleans up a sandbox whose RunPodSandbox never finished,
// or keeps it NOTREADY (pause task reaped) when that is not possible.
func (c *Controller) recoverHalfMade(ctx context.Context, cc containerd.Container, md *Metadata) recovery.Result {
	keep := recovery.Result{Commit: func() { c.addRecovered(md, cc, true) }}
	// RunPodSandbox writes the pod files before it creates the containerd
	// container: without them this root never knew the sandbox (a lost
	// root); keep its record, netns and files, but a pause process of a
	// sandbox that never became ready serves nobody.
	if _, err := os.Stat(PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, md.ID).RootDir); err != nil {
		klog.ErrorS(err, "Half-made sandbox has no files under this root; keeping it NOTREADY", "podSandboxID", md.ID)
		if err := reapPause(ctx, cc); err != nil {
			klog.ErrorS(err, "Reaping the pause task of a half-made sandbox", "podSandboxID", md.ID)
		}
		return keep
	}
	klog.InfoS("Cleaning up sandbox left half-made by a previous run", "podSandboxID", md.ID, "phase", md.Phase)
	if err := c.cleanupHalfMade(ctx, cc, md); err != nil {
		// Keep it, NOTREADY, with its netns: StopPodSandbox and
		// RemovePodSandbox (kubelet's GC) retry the teardown. Dropping it
		// here would leak its IP and CNI rules until the next restart,
		// and removing its netns would keep CNI DEL from ever removing
		// the bridge plugin's masquerade rules.
		klog.ErrorS(err, "Cleaning up half-made sandbox failed; keeping it NOTREADY so that StopPodSandbox/RemovePodSandbox retry", "podSandboxID", md.ID)
		return keep
	}
	return recovery.Result{}
}

// reapPause kills and deletes the pause task of a sandbox kept NOTREADY
// (none is not an error).
func reapPause(ctx context.Context, cc containerd.Container) error {
	task, err := cc.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading pause task: %w", err)
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting pause task: %w", err)
	}
	return nil
}

// cleanupHalfMade undoes a sandbox whose RunPodSandbox never finished:
// pause task, network, image volumes, files, containerd container, and any
// shim containerd forgot.
func (c *Controller) cleanupHalfMade(ctx context.Context, cc containerd.Container, md *Metadata) error {
	if err := reapPause(ctx, cc); err != nil {
		return err
	}
	if md.NetNSPath != "" && !md.NetworkTornDown {
		args, err := cni.NewPodArgs(md.ID, md.Config, c.podCIDRs())
		if err != nil {
			args = cni.PodArgs{}
		}
		args.LoopbackPlugin = cni.LoopbackInResult(md.CNIResult)
		path := md.NetNSPath
		if closed, err := c.o.Deps.Host.LoadNetNS(path).Closed(); err == nil && closed {
			path = ""
		}
		// The same DEL fallbacks as Stop: a plugin refusing the pod's
		// capability arguments does not keep the address.
		if err := cni.TeardownPod(ctx, c.o.Deps.Network, md.ID, path, args, NetworkAdded(*md)); err != nil {
			return fmt.Errorf("CNI DEL: %w", err)
		}
		if err := c.o.Deps.Host.LoadNetNS(md.NetNSPath).Remove(); err != nil {
			return fmt.Errorf("removing netns: %w", err)
		}
	}
	if err := c.o.ImageVolumes.Unmount(md.ID); err != nil {
		return err
	}
	if err := c.RemoveFiles(md.ID); err != nil {
		return err
	}
	if err := cc.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container: %w", err)
	}
	c.reapShims(md.ID, md.RuntimeHandler)
	return nil
}

// keep publishes a sandbox that could not be recovered as NOTREADY, so that
// kubelet stops (CNI DEL, netns) and removes it. Its metadata comes from its
// containerd record, rebuilt from the spec when unreadable.
func (c *Controller) keep(cc containerd.Container) {
	md, err := decodeMetadata(context.Background(), cc)
	readable := err == nil
	if !readable {
		md = c.rebuildMetadata(cc)
	}
	c.addRecovered(md, cc, readable)
}

// addRecovered publishes a NOTREADY sandbox.
func (c *Controller) addRecovered(md *Metadata, cc containerd.Container, reserveName bool) {
	sb := New(*md)
	sb.Container = cc
	sb.SetNotReady(255, c.now())
	c.publishRecovered(sb, reserveName)
}

// publishRecovered adds a recovered sandbox to the store. A sandbox rebuilt
// without its metadata does not know its name's attempt and does not hold
// the name.
func (c *Controller) publishRecovered(sb *Sandbox, reserveName bool) {
	if reserveName {
		if err := c.o.Names.Reserve(sb.Name, sb.ID); err != nil {
			klog.ErrorS(err, "Recovered sandbox name conflict; keeping the sandbox", "podSandboxID", sb.ID)
		}
	}
	if err := c.o.Store.Add(sb); err != nil {
		klog.ErrorS(err, "Adding recovered sandbox", "podSandboxID", sb.ID)
		return
	}
	st, _ := sb.State()
	klog.V(2).InfoS("Recovered sandbox", "podSandboxID", sb.ID, "ready", st == StateReady)
}

// decodeMetadata decodes a sandbox's metadata from its listed containerd
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
		return nil, fmt.Errorf("metadata of sandbox %s names ID %q", cc.ID(), md.ID)
	}
	return md, nil
}

// rebuildMetadata makes the metadata of a sandbox whose own cannot be read
// from what containerd has: the pod's name, namespace and UID from the spec
// annotations, the netns path from the spec (or the sandbox's netns
// directory), the runtime. Its IP is unknown; CNI DEL does not need it.
func (c *Controller) rebuildMetadata(cc containerd.Container) *Metadata {
	rec, _ := cc.Info(context.Background(), containerd.WithoutRefreshedMetadata)
	sp := recovery.ListedSpec(rec)
	ann := sp.Annotations
	md := &Metadata{
		Version: 1,
		ID:      cc.ID(),
		Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{
				Name: ann[AnnotationName], Namespace: ann[AnnotationNamespace], Uid: ann[AnnotationUID],
			},
			LogDirectory: ann[AnnotationLogDirectory],
		},
		RuntimeType: rec.Runtime.Name,
		CreatedAt:   rec.CreatedAt.UnixNano(),
		Phase:       PhaseCreated,
	}
	md.Name = Name(md.Config.Metadata)
	cfg := c.o.Config
	if rt, ok := cfg.Runtimes[cfg.DefaultRuntimeName]; ok && rt.Type == rec.Runtime.Name {
		md.RuntimeHandler = cfg.DefaultRuntimeName
	} else {
		for name, rt := range cfg.Runtimes {
			if rt.Type == rec.Runtime.Name {
				md.RuntimeHandler = name
				break
			}
		}
	}
	if sp.Linux != nil {
		for _, ns := range sp.Linux.Namespaces {
			if ns.Type == runtimespec.NetworkNamespace && ns.Path != "" {
				md.NetNSPath = ns.Path
			}
		}
	}
	if md.NetNSPath == "" {
		dir := PathsFor(cfg.RootDir, cfg.StateDir, md.ID).NetNSDir
		if entries, err := os.ReadDir(dir); err == nil && len(entries) == 1 {
			md.NetNSPath = filepath.Join(dir, entries[0].Name())
		}
	}
	return md
}

// removeOrphanDirs removes netns mounts, shm mounts and files of sandboxes
// that containerd has no container for (known are the IDs it listed): the
// daemon died before the container was created, so no CNI ADD ever ran for
// them. The store is not the judge: a sandbox it lacks may still exist in
// containerd.
func (c *Controller) removeOrphanDirs(known map[string]bool) {
	cfg := c.o.Config
	netnsBase := filepath.Join(cfg.StateDir, "netns")
	for _, base := range []string{
		netnsBase,
		filepath.Join(cfg.StateDir, "sandboxes"),
		filepath.Join(cfg.RootDir, "sandboxes"),
	} {
		entries, err := os.ReadDir(base)
		if err != nil {
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if known[id] {
				continue
			}
			klog.InfoS("Removing files of a sandbox containerd does not have", "dir", filepath.Join(base, id))
			if base == netnsBase {
				files, _ := os.ReadDir(filepath.Join(base, id))
				for _, f := range files {
					if err := c.o.Deps.Host.LoadNetNS(filepath.Join(base, id, f.Name())).Remove(); err != nil {
						klog.ErrorS(err, "Removing orphan netns", "path", filepath.Join(base, id, f.Name()))
					}
				}
			}
			if err := c.o.ImageVolumes.Unmount(id); err != nil {
				klog.ErrorS(err, "Unmounting orphan image volumes", "podSandboxID", id)
			}
			_ = c.RemoveFiles(id)
		}
	}
}

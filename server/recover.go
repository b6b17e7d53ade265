package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// recoverSandboxes rebuilds the sandbox store from containerd. A sandbox
// whose RunPodSandbox never finished (the daemon died in the middle) is
// cleaned up completely: task, CNI (DEL with the ADD arguments), netns,
// files and container; when that fails (e.g. no CNI config yet) it is kept
// NOTREADY, netns included, so that StopPodSandbox/RemovePodSandbox retry.
// Directories that belong to no known sandbox are removed last.
func (s *Service) recoverSandboxes(ctx context.Context) error {
	ctrs, err := s.ctrdState.Containers(ctx, fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindSandbox))
	if err != nil {
		return fmt.Errorf("listing sandbox containers: %w", err)
	}
	for _, c := range ctrs {
		md, err := loadSandboxMetadata(ctx, c)
		if err != nil {
			klog.ErrorS(err, "Skipping sandbox container with unreadable metadata", "id", c.ID())
			continue
		}
		halfMade := md.Phase != sandbox.PhaseCreated
		if halfMade {
			klog.InfoS("Cleaning up sandbox left half-made by a previous run", "podSandboxID", md.ID, "phase", md.Phase)
			err := s.cleanupHalfMadeSandbox(ctx, c, md)
			if err == nil {
				continue
			}
			// Keep it, NOTREADY, with its netns: StopPodSandbox and
			// RemovePodSandbox (kubelet's GC) retry the teardown. Dropping it
			// here would leak its IP and CNI rules until the next restart,
			// and removing its netns would keep CNI DEL from ever removing
			// the bridge plugin's masquerade rules.
			klog.ErrorS(err, "Cleaning up half-made sandbox failed; keeping it NOTREADY so that StopPodSandbox/RemovePodSandbox retry", "podSandboxID", md.ID)
		}
		sb := sandbox.New(*md)
		sb.Container = c
		if halfMade {
			sb.SetNotReady(255, time.Now())
		} else if running, code, at := taskRunning(ctx, c); running {
			task, err := c.Task(ctx, nil)
			if err == nil {
				sb.SetReady(task.Pid())
			}
		} else {
			if task, err := c.Task(ctx, nil); err == nil {
				if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
					klog.ErrorS(err, "Deleting stopped pause task", "podSandboxID", md.ID)
				}
			}
			sb.SetNotReady(code, at)
		}
		if err := s.sandboxNames.Reserve(md.Name, md.ID); err != nil {
			klog.ErrorS(err, "Recovered sandbox name conflict; keeping the sandbox", "podSandboxID", md.ID)
		}
		if err := s.sandboxes.Add(sb); err != nil {
			return err
		}
		st, _ := sb.State()
		klog.V(2).InfoS("Recovered sandbox", "podSandboxID", md.ID, "state", criSandboxState(st).String())
	}
	s.cleanupOrphanSandboxDirs(ctx)
	return nil
}

func loadSandboxMetadata(ctx context.Context, c containerd.Container) (*sandbox.Metadata, error) {
	return loadExtension[sandbox.Metadata](ctx, c, sandbox.MetadataExtension)
}

// loadExtension decodes the typed extension name of a containerd container.
func loadExtension[T any](ctx context.Context, c containerd.Container, name string) (*T, error) {
	exts, err := c.Extensions(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading extensions: %w", err)
	}
	a, ok := exts[name]
	if !ok {
		return nil, fmt.Errorf("no %s extension", name)
	}
	v, err := typeurl.UnmarshalAny(a)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", name, err)
	}
	md, ok := v.(*T)
	if !ok {
		return nil, fmt.Errorf("extension %s has unexpected type %T", name, v)
	}
	return md, nil
}

func (s *Service) cleanupHalfMadeSandbox(ctx context.Context, c containerd.Container, md *sandbox.Metadata) error {
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("deleting task: %w", err)
		}
	}
	if md.NetNSPath != "" && !md.NetworkTornDown {
		opts, _ := cni.PodOptions(md.ID, md.Config, s.podCIDRs())
		path := md.NetNSPath
		if closed, err := s.loadNetNS(path).Closed(); err == nil && closed {
			path = ""
		}
		if err := s.netPlugin.Remove(ctx, md.ID, path, opts...); err != nil {
			return fmt.Errorf("CNI DEL: %w", err)
		}
		if err := s.loadNetNS(md.NetNSPath).Remove(); err != nil {
			return fmt.Errorf("removing netns: %w", err)
		}
	}
	if err := s.unmountImageVolumes(md.ID); err != nil {
		return err
	}
	if err := removeSandboxFiles(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, md.ID)); err != nil {
		return err
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container: %w", err)
	}
	return nil
}

// cleanupOrphanSandboxDirs removes netns mounts, shm mounts and files of
// sandboxes that have no containerd container: the daemon died before the
// container was created, so no CNI ADD ever ran for them.
func (s *Service) cleanupOrphanSandboxDirs(ctx context.Context) {
	known := func(id string) bool {
		_, err := s.sandboxes.Get(id)
		return err == nil && len(id) == 64
	}
	for _, base := range []string{
		filepath.Join(s.config.StateDir, "netns"),
		filepath.Join(s.config.StateDir, "sandboxes"),
		filepath.Join(s.config.RootDir, "sandboxes"),
	} {
		entries, err := os.ReadDir(base)
		if err != nil {
			continue
		}
		for _, e := range entries {
			id := e.Name()
			if known(id) {
				continue
			}
			if sb, err := s.sandboxes.Get(id); err == nil && sb.ID == id {
				continue
			}
			klog.InfoS("Removing files of unknown sandbox", "dir", filepath.Join(base, id))
			if base == filepath.Join(s.config.StateDir, "netns") {
				files, _ := os.ReadDir(filepath.Join(base, id))
				for _, f := range files {
					if err := s.loadNetNS(filepath.Join(base, id, f.Name())).Remove(); err != nil {
						klog.ErrorS(err, "Removing orphan netns", "path", filepath.Join(base, id, f.Name()))
					}
				}
			}
			if err := s.unmountImageVolumes(id); err != nil {
				klog.ErrorS(err, "Unmounting orphan image volumes", "podSandboxID", id)
			}
			_ = removeSandboxFiles(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, id))
		}
	}
}

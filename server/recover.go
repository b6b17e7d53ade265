package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/extension"
	"github.com/cri-containerd/cri-containerd/recovery"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// recoveryResult is what recovering one object produced: commit publishes
// it (stores, name registry, exit handlers); abort releases what it holds
// (e.g. re-opened output pipes) when it came after the object's deadline.
type recoveryResult struct {
	commit func()
	abort  func()
}

// recoveryRunner runs recoveries (package recovery) with the configured
// bound and deadline.
func (s *Service) recoveryRunner() recovery.Runner {
	return recovery.Runner{Concurrency: s.config.RecoveryConcurrency, Timeout: s.config.RecoveryTimeout.Duration}
}

// boundedEach runs f(i) for i in [0, n), at most config.RecoveryConcurrency
// at once, each with a context that ends after config.RecoveryTimeout.
func (s *Service) boundedEach(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	s.recoveryRunner().Each(ctx, n, f)
}

func (s *Service) recoveryTimeout() time.Duration { return s.recoveryRunner().TimeoutOrDefault() }

// recoverAll recovers every listed containerd container of one kind (see
// recovery.Runner.All).
func (s *Service) recoverAll(ctx context.Context, kind string, ctrs []containerd.Container,
	recoverOne func(context.Context, containerd.Container) (recoveryResult, error),
	keep func(containerd.Container),
) {
	s.recoveryRunner().All(ctx, kind, ctrs, func(ctx context.Context, c containerd.Container) (recovery.Result, error) {
		r, err := recoverOne(ctx, c)
		return recovery.Result{Commit: r.commit, Abort: r.abort}, err
	}, keep)
}

// listedIDs are the IDs of the listed containers.
func listedIDs(ctrs []containerd.Container) map[string]bool { return recovery.IDs(ctrs) }

// recoverSandboxes rebuilds the sandbox store from containerd. A sandbox
// whose RunPodSandbox never finished (the daemon died in the middle) is
// cleaned up completely: task, CNI (DEL with the ADD arguments), netns,
// files and container; when that fails (e.g. no CNI config yet) it is kept
// NOTREADY, netns included, so that StopPodSandbox/RemovePodSandbox retry.
// A sandbox whose metadata cannot be read, or whose recovery fails or times
// out, is kept NOTREADY too. Directories of IDs that containerd does not
// have are removed last.
func (s *Service) recoverSandboxes(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, s.recoveryTimeout())
	ctrs, err := s.deps.Containerd.Containers(lctx, fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindSandbox))
	cancel()
	if err != nil {
		return fmt.Errorf("listing sandbox containers: %w", err)
	}
	s.recoverAll(ctx, "sandbox", ctrs, s.recoverSandbox, s.keepSandbox)
	if ctx.Err() != nil {
		return ctx.Err() // nothing is removed on a cancelled recovery
	}
	s.cleanupOrphanSandboxDirs(listedIDs(ctrs))
	return nil
}

// recoverSandbox recovers one sandbox from its metadata and its pause task.
func (s *Service) recoverSandbox(ctx context.Context, c containerd.Container) (recoveryResult, error) {
	md, err := s.sandboxMetadata(ctx, c)
	if err != nil {
		klog.ErrorS(err, "Sandbox metadata is unreadable; keeping the sandbox NOTREADY, rebuilt from its containerd record", "podSandboxID", c.ID())
		return recoveryResult{commit: func() { s.keepSandbox(c) }}, nil
	}
	if md.Phase != sandbox.PhaseCreated {
		// RunPodSandbox writes the pod files before it creates the
		// containerd container: without them this root never knew the
		// sandbox (another daemon's, or a lost root); do not tear it down.
		if _, err := os.Stat(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, md.ID).RootDir); err != nil {
			klog.ErrorS(err, "Half-made sandbox has no files under this root; keeping it NOTREADY, untouched", "podSandboxID", md.ID)
			return recoveryResult{commit: func() { s.addRecoveredSandbox(md, c, true) }}, nil
		}
		klog.InfoS("Cleaning up sandbox left half-made by a previous run", "podSandboxID", md.ID, "phase", md.Phase)
		err := s.cleanupHalfMadeSandbox(ctx, c, md)
		if err == nil {
			return recoveryResult{}, nil
		}
		// Keep it, NOTREADY, with its netns: StopPodSandbox and
		// RemovePodSandbox (kubelet's GC) retry the teardown. Dropping it
		// here would leak its IP and CNI rules until the next restart,
		// and removing its netns would keep CNI DEL from ever removing
		// the bridge plugin's masquerade rules.
		klog.ErrorS(err, "Cleaning up half-made sandbox failed; keeping it NOTREADY so that StopPodSandbox/RemovePodSandbox retry", "podSandboxID", md.ID)
		return recoveryResult{commit: func() { s.addRecoveredSandbox(md, c, true) }}, nil
	}
	sb := sandbox.New(*md)
	sb.Container = c
	task, err := c.Task(ctx, nil)
	switch {
	case errdefs.IsNotFound(err):
		sb.SetNotReady(255, time.Now())
	case err != nil:
		return recoveryResult{}, fmt.Errorf("loading pause task: %w", err)
	default:
		st, err := task.Status(ctx)
		if err != nil {
			return recoveryResult{}, fmt.Errorf("pause task status: %w", err)
		}
		switch st.Status {
		case containerd.Running, containerd.Paused, containerd.Pausing, containerd.Created:
			sb.SetReady(task.Pid())
		default:
			code, at := st.ExitStatus, st.ExitTime
			if st.Status != containerd.Stopped {
				code, at = 255, time.Now()
			}
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Deleting stopped pause task", "podSandboxID", md.ID)
			}
			sb.SetNotReady(code, at)
		}
	}
	return recoveryResult{commit: func() { s.publishRecoveredSandbox(sb, true) }}, nil
}

// keepSandbox publishes a sandbox that could not be recovered as NOTREADY,
// so that kubelet stops (CNI DEL, netns) and removes it. Its metadata comes
// from its containerd record, rebuilt from the spec when unreadable.
func (s *Service) keepSandbox(c containerd.Container) {
	md, err := s.sandboxMetadata(context.Background(), c)
	readable := err == nil
	if !readable {
		md = s.rebuildSandboxMetadata(c)
	}
	s.addRecoveredSandbox(md, c, readable)
}

// addRecoveredSandbox publishes a NOTREADY sandbox.
func (s *Service) addRecoveredSandbox(md *sandbox.Metadata, c containerd.Container, reserveName bool) {
	sb := sandbox.New(*md)
	sb.Container = c
	sb.SetNotReady(255, time.Now())
	s.publishRecoveredSandbox(sb, reserveName)
}

// publishRecoveredSandbox adds a recovered sandbox to the store. A sandbox
// rebuilt without its metadata does not know its name's attempt and does
// not hold the name.
func (s *Service) publishRecoveredSandbox(sb *sandbox.Sandbox, reserveName bool) {
	if reserveName {
		if err := s.sandboxNames.Reserve(sb.Name, sb.ID); err != nil {
			klog.ErrorS(err, "Recovered sandbox name conflict; keeping the sandbox", "podSandboxID", sb.ID)
		}
	}
	if err := s.sandboxes.Add(sb); err != nil {
		klog.ErrorS(err, "Adding recovered sandbox", "podSandboxID", sb.ID)
		return
	}
	st, _ := sb.State()
	klog.V(2).InfoS("Recovered sandbox", "podSandboxID", sb.ID, "state", criSandboxState(st).String())
}

// sandboxMetadata decodes a sandbox's metadata from its listed containerd
// record (no call to containerd).
func (s *Service) sandboxMetadata(ctx context.Context, c containerd.Container) (*sandbox.Metadata, error) {
	rec, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, fmt.Errorf("reading container record: %w", err)
	}
	md, err := extension.Decode[sandbox.Metadata](rec.Extensions, sandbox.MetadataExtension)
	if err != nil {
		return nil, err
	}
	if md.ID != c.ID() {
		return nil, fmt.Errorf("metadata of sandbox %s names ID %q", c.ID(), md.ID)
	}
	return md, nil
}

// Annotations of the sandbox and container specs (sandboxAnnotations,
// containerAnnotations) that recovery rebuilds unreadable metadata from.
const (
	annSandboxName         = "io.kubernetes.cri.sandbox-name"
	annSandboxNamespace    = "io.kubernetes.cri.sandbox-namespace"
	annSandboxUID          = "io.kubernetes.cri.sandbox-uid"
	annSandboxLogDirectory = "io.kubernetes.cri.sandbox-log-directory"
	annSandboxID           = "io.kubernetes.cri.sandbox-id"
	annContainerName       = "io.kubernetes.cri.container-name"
	annImageName           = "io.kubernetes.cri.image-name"
)

// listedSpec decodes the OCI spec of a listed containerd record.
func listedSpec(rec containers.Container) *oci.Spec { return recovery.ListedSpec(rec) }

// rebuildSandboxMetadata makes the metadata of a sandbox whose own cannot
// be read from what containerd has: the pod's name, namespace and UID from
// the spec annotations, the netns path from the spec (or the sandbox's
// netns directory), the runtime. Its IP is unknown; CNI DEL does not need it.
func (s *Service) rebuildSandboxMetadata(c containerd.Container) *sandbox.Metadata {
	rec, _ := c.Info(context.Background(), containerd.WithoutRefreshedMetadata)
	sp := listedSpec(rec)
	ann := sp.Annotations
	md := &sandbox.Metadata{
		Version: 1,
		ID:      c.ID(),
		Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{
				Name: ann[annSandboxName], Namespace: ann[annSandboxNamespace], Uid: ann[annSandboxUID],
			},
			LogDirectory: ann[annSandboxLogDirectory],
		},
		RuntimeType: rec.Runtime.Name,
		CreatedAt:   rec.CreatedAt.UnixNano(),
		Phase:       sandbox.PhaseCreated,
	}
	md.Name = sandboxName(md.Config.Metadata)
	if rt, ok := s.config.Runtimes[s.config.DefaultRuntimeName]; ok && rt.Type == rec.Runtime.Name {
		md.RuntimeHandler = s.config.DefaultRuntimeName
	} else {
		for name, rt := range s.config.Runtimes {
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
		dir := sandbox.PathsFor(s.config.RootDir, s.config.StateDir, md.ID).NetNSDir
		if entries, err := os.ReadDir(dir); err == nil && len(entries) == 1 {
			md.NetNSPath = filepath.Join(dir, entries[0].Name())
		}
	}
	return md
}

func (s *Service) cleanupHalfMadeSandbox(ctx context.Context, c containerd.Container, md *sandbox.Metadata) error {
	if task, err := c.Task(ctx, nil); err == nil {
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("deleting task: %w", err)
		}
	}
	if md.NetNSPath != "" && !md.NetworkTornDown {
		args, err := cni.NewPodArgs(md.ID, md.Config, s.podCIDRs())
		if err != nil {
			args = cni.PodArgs{}
		}
		path := md.NetNSPath
		if closed, err := s.deps.Host.LoadNetNS(path).Closed(); err == nil && closed {
			path = ""
		}
		// The same DEL fallbacks as StopPodSandbox: a plugin refusing the
		// pod's capability arguments does not keep the address.
		if err := cni.TeardownPod(ctx, s.deps.Network, md.ID, path, args, sandbox.NetworkAdded(*md)); err != nil {
			return fmt.Errorf("CNI DEL: %w", err)
		}
		if err := s.deps.Host.LoadNetNS(md.NetNSPath).Remove(); err != nil {
			return fmt.Errorf("removing netns: %w", err)
		}
	}
	if err := s.unmountImageVolumes(md.ID); err != nil {
		return err
	}
	if err := s.sandboxController().RemoveFiles(md.ID); err != nil {
		return err
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting container: %w", err)
	}
	return nil
}

// cleanupOrphanSandboxDirs removes netns mounts, shm mounts and files of
// sandboxes that containerd has no container for (known are the IDs it
// listed): the daemon died before the container was created, so no CNI ADD
// ever ran for them. The in-memory store is not the judge: a sandbox it
// lacks may still exist in containerd.
func (s *Service) cleanupOrphanSandboxDirs(known map[string]bool) {
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
			if known[id] {
				continue
			}
			klog.InfoS("Removing files of a sandbox containerd does not have", "dir", filepath.Join(base, id))
			if base == filepath.Join(s.config.StateDir, "netns") {
				files, _ := os.ReadDir(filepath.Join(base, id))
				for _, f := range files {
					if err := s.deps.Host.LoadNetNS(filepath.Join(base, id, f.Name())).Remove(); err != nil {
						klog.ErrorS(err, "Removing orphan netns", "path", filepath.Join(base, id, f.Name()))
					}
				}
			}
			if err := s.unmountImageVolumes(id); err != nil {
				klog.ErrorS(err, "Unmounting orphan image volumes", "podSandboxID", id)
			}
			_ = s.sandboxController().RemoveFiles(id)
		}
	}
}

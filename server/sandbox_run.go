package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
)

// cleanupTimeout bounds each rollback step, which runs on a context that is
// not cancelled with the request's.
const cleanupTimeout = backend.CleanupTimeout

// RunPodSandbox creates and starts a pod sandbox: name reservation, pause
// image, netns, pod files, the containerd container (metadata persisted
// before anything that could leak), CNI, then the pause task. Every step
// undoes itself when a later one fails.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, retErr error) {
	ctx = s.nsCtx(ctx)
	cfg := r.GetConfig()
	if err := validateSandboxConfig(cfg); err != nil {
		return nil, err
	}
	handler, rt, err := s.config.RuntimeFor(r.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	id := newID()
	name := sandboxName(cfg.GetMetadata())
	if err := s.sandboxNames.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("reserving sandbox name %q: %w", name, err)
	}
	// keep is set when the network cannot be torn down: the sandbox then
	// stays, NOTREADY, for StopPodSandbox/RemovePodSandbox to retry, so that
	// its address is not leaked (see the pod network step).
	keep := false
	defer func() {
		if retErr != nil && !keep {
			s.sandboxNames.ReleaseByID(id)
		}
	}()
	log := klog.FromContext(ctx).WithValues("podSandboxID", id, "pod", klog.KRef(cfg.GetMetadata().GetNamespace(), cfg.GetMetadata().GetName()))

	img, err := s.deps.Images.EnsureImage(ctx, s.config.SandboxImage, nil)
	if err != nil {
		return nil, fmt.Errorf("getting sandbox image %q: %w", s.config.SandboxImage, err)
	}
	cimg, err := s.deps.Containerd.GetImage(ctx, img.ID)
	if err != nil {
		cimg, err = backend.FindImage(ctx, s.deps.Containerd, img.RepoTags, img.RepoDigests)
		if err != nil {
			return nil, fmt.Errorf("loading sandbox image %q from containerd: %w", s.config.SandboxImage, err)
		}
	}

	paths := sandbox.PathsFor(s.config.RootDir, s.config.StateDir, id)
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNetwork := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE

	// 1. Network namespace, in a directory named for the sandbox, so that a
	// crash before the metadata lands can still be found and cleaned.
	var podNS backend.NetNS
	if !hostNetwork {
		podNS, err = s.deps.Host.NewNetNS(paths.NetNSDir)
		if err != nil {
			_ = os.RemoveAll(paths.NetNSDir) // made before the failure
			return nil, fmt.Errorf("creating network namespace: %w", err)
		}
		defer func() {
			if retErr != nil && !keep {
				if err := podNS.Remove(); err != nil {
					log.Error(err, "Rollback: removing network namespace")
				}
				_ = os.RemoveAll(paths.NetNSDir)
			}
		}()
	}

	// 2. Pod files and /dev/shm. Each rollback is registered before its
	// step: a step that fails half-way leaves a directory behind.
	defer func() {
		if retErr != nil && !keep {
			_ = os.RemoveAll(paths.RootDir)
		}
	}()
	if err := sandbox.WriteFiles(paths, cfg, sandbox.DefaultHostFiles); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil && !keep {
			if err := s.deps.Host.UnmountShm(paths.ShmPath()); err != nil {
				log.Error(err, "Rollback: unmounting shm")
			}
			_ = os.RemoveAll(paths.StateDir)
		}
	}()
	shmPath := ""
	if !hostIPC {
		shmPath = paths.ShmPath()
		if err := s.deps.Host.MountShm(shmPath, shmSizeBytes); err != nil {
			return nil, err
		}
	}

	// 3. The containerd container, carrying our metadata.
	md := sandbox.Metadata{
		Version:        1,
		ID:             id,
		Name:           name,
		Config:         cfg,
		RuntimeHandler: handler,
		RuntimeType:    rt.Type,
		CreatedAt:      time.Now().UnixNano(),
		Phase:          sandbox.PhaseCreating,
		ImageID:        img.ID,
	}
	if podNS != nil {
		md.NetNSPath = podNS.GetPath()
	}
	specOpts, err := s.specGen.SandboxSpecOpts(spec.SandboxParams{
		ID:                      id,
		Config:                  cfg,
		ImageConfig:             img.Config,
		NetNSPath:               md.NetNSPath,
		HostnamePath:            paths.HostnamePath(),
		HostsPath:               paths.HostsPath(),
		ResolvConfPath:          paths.ResolvConfPath(),
		ShmPath:                 shmPath,
		CgroupParent:            cfg.GetLinux().GetCgroupParent(),
		SystemdCgroup:           s.config.SystemdCgroup(rt),
		RestrictOOMScoreAdj:     s.restrictOOM,
		EnableUnprivilegedPorts: s.config.EnableUnprivilegedPorts,
		EnableUnprivilegedICMP:  s.config.EnableUnprivilegedICMP,
		ImageName:               s.config.SandboxImage,
		Annotations:             sandboxAnnotations(id, cfg),
	})
	if err != nil {
		return nil, fmt.Errorf("generating sandbox spec: %w", err)
	}
	ctr, err := backend.NewContainer(ctx, s.deps.Containerd, id,
		containerd.WithSnapshotter(s.config.SnapshotterFor(rt)),
		containerd.WithNewSnapshot(id, cimg),
		containerd.WithImageName(cimg.Name()),
		containerd.WithRuntime(rt.Type, s.config.RuncOptions(rt)),
		containerd.WithContainerLabels(map[string]string{sandbox.LabelKind: sandbox.KindSandbox}),
		containerd.WithContainerExtension(sandbox.MetadataExtension, &md),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("creating containerd container: %w", err)
	}
	defer func() {
		if retErr != nil && !keep {
			backend.RollbackContainer(ctx, ctr, log)
		}
	}()

	// 4. Pod network. The rollback is registered before ADD: a failed ADD
	// may have allocated an address. When even the retries of DEL without
	// the pod's capability arguments fail, the sandbox is kept NOTREADY
	// rather than dropped with its address.
	if podNS != nil {
		cniArgs, err := cni.NewPodArgs(id, cfg, s.podCIDRs())
		if err != nil {
			return nil, err
		}
		added, attempted := false, true
		defer func() {
			if retErr == nil || !attempted {
				return
			}
			cctx, cancel := backend.CleanupCtx(ctx)
			defer cancel()
			if err := cni.TeardownPod(cctx, s.deps.Network, id, md.NetNSPath, cniArgs, added); err != nil {
				log.Error(err, "Rollback: CNI DEL failed; keeping the sandbox NOTREADY so that StopPodSandbox/RemovePodSandbox retry")
				keep = true
				s.keepUntornSandbox(cctx, ctr, md, log)
			}
		}()
		start := time.Now()
		res, err := s.deps.Network.Setup(ctx, id, md.NetNSPath, cniArgs.Opts()...)
		s.observeCNI("setup", start, err)
		if err != nil {
			// No configuration: no plugin ran, there is nothing to tear down.
			attempted = !errors.Is(err, cni.ErrNetworkNotReady)
			return nil, fmt.Errorf("setting up pod network: %w", err)
		}
		added = true
		if raw, err := json.Marshal(res); err == nil {
			md.CNIResult = raw
		}
		md.IP, md.AdditionalIPs, err = cni.PodIPs(res)
		if err != nil {
			return nil, fmt.Errorf("pod network for %s: %w", id, err)
		}
		if err := ctr.Update(ctx, backend.UpdateExtension(sandbox.MetadataExtension, &md)); err != nil {
			return nil, fmt.Errorf("persisting sandbox network: %w", err)
		}
	}

	// 5. The pause task.
	sb := sandbox.New(md)
	sb.Container = ctr
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return nil, fmt.Errorf("creating pause task: %w", err)
	}
	defer func() {
		if retErr != nil {
			cctx, cancel := backend.CleanupCtx(ctx)
			defer cancel()
			if _, err := task.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				log.Error(err, "Rollback: deleting pause task")
			}
		}
	}()
	// The store entry must exist before Start so that the exit event of a
	// pause process that dies at once is not missed.
	if err := s.sandboxes.Add(sb); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			s.sandboxes.Delete(id)
		}
	}()
	if err := task.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting pause task: %w", err)
	}
	sb.SetReady(task.Pid())
	md = sb.UpdateMetadata(func(m *sandbox.Metadata) { m.Phase = sandbox.PhaseCreated })
	if err := ctr.Update(ctx, backend.UpdateExtension(sandbox.MetadataExtension, &md)); err != nil {
		return nil, fmt.Errorf("persisting sandbox state: %w", err)
	}
	s.emitSandboxEvent(sb, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	s.emitSandboxEvent(sb, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	log.V(2).Info("Pod sandbox running", "ip", md.IP, "pid", task.Pid())
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// keepUntornSandbox keeps a sandbox whose RunPodSandbox failed and whose
// network could not be torn down: persisted as half-made and stored
// NOTREADY, with its containerd container, netns and files, as recovery keeps
// one. StopPodSandbox retries the CNI DEL and RemovePodSandbox removes the rest.
func (s *Service) keepUntornSandbox(ctx context.Context, ctr containerd.Container, md sandbox.Metadata, log klog.Logger) {
	md.Phase = sandbox.PhaseCreating
	if err := ctr.Update(ctx, backend.UpdateExtension(sandbox.MetadataExtension, &md)); err != nil {
		log.Error(err, "Persisting the kept sandbox")
	}
	sb := sandbox.New(md)
	sb.Container = ctr
	sb.SetNotReady(255, time.Now())
	if err := s.sandboxes.Add(sb); err != nil {
		log.Error(err, "Storing the kept sandbox")
	}
}

// shmSizeBytes is the size of a pod's own /dev/shm (as containerd: 64 MiB).
const shmSizeBytes = 64 * 1024 * 1024

func validateSandboxConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("sandbox config is required: %w", errdefs.ErrInvalidArgument)
	}
	md := cfg.GetMetadata()
	if md == nil || md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return fmt.Errorf("sandbox metadata name, namespace and uid are required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// sandboxName is the unique CRI name of a pod sandbox.
func sandboxName(md *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{md.GetName(), md.GetNamespace(), md.GetUid(), fmt.Sprint(md.GetAttempt())}, "_")
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func sandboxAnnotations(id string, cfg *runtimeapi.PodSandboxConfig) map[string]string {
	return map[string]string{
		"io.kubernetes.cri.container-type":        "sandbox",
		"io.kubernetes.cri.sandbox-id":            id,
		"io.kubernetes.cri.sandbox-name":          cfg.GetMetadata().GetName(),
		"io.kubernetes.cri.sandbox-namespace":     cfg.GetMetadata().GetNamespace(),
		"io.kubernetes.cri.sandbox-uid":           cfg.GetMetadata().GetUid(),
		"io.kubernetes.cri.sandbox-log-directory": cfg.GetLogDirectory(),
	}
}

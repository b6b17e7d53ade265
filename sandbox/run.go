package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/spec"
)

// ShmSizeBytes is the size of a pod's own /dev/shm (as containerd: 64 MiB).
const ShmSizeBytes = 64 * 1024 * 1024

// Run creates and starts a pod sandbox and returns its ID: name
// reservation, pause image, netns, pod files, the containerd container
// (metadata persisted before anything that could leak), CNI, then the pause
// task. Every step undoes itself when a later one fails. cfg must have been
// validated.
func (c *Controller) Run(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) (_ string, retErr error) {
	s := c.o
	handler, rt, err := s.Config.RuntimeFor(runtimeHandler)
	if err != nil {
		return "", err
	}
	id := NewID()
	name := Name(cfg.GetMetadata())
	if err := s.Names.Reserve(name, id); err != nil {
		return "", fmt.Errorf("reserving sandbox name %q: %w", name, err)
	}
	// keep is set when the network cannot be torn down: the sandbox then
	// stays, NOTREADY, for StopPodSandbox/RemovePodSandbox to retry, so that
	// its address is not leaked (see the pod network step).
	keep := false
	defer func() {
		if retErr != nil && !keep {
			s.Names.ReleaseByID(id)
		}
	}()
	log := klog.FromContext(ctx).WithValues("podSandboxID", id, "pod", klog.KRef(cfg.GetMetadata().GetNamespace(), cfg.GetMetadata().GetName()))

	img, err := s.Deps.Images.EnsureImage(ctx, s.Config.SandboxImage, nil)
	if err != nil {
		return "", fmt.Errorf("getting sandbox image %q: %w", s.Config.SandboxImage, err)
	}
	paths := PathsFor(s.Config.RootDir, s.Config.StateDir, id)
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	// containerd's image record is read only when the image store does not
	// know the chain ID or the snapshot is ID-remapped (as for containers);
	// otherwise the container names the record the image store made under
	// the image's ID.
	var cimg containerd.Image
	imageRecord := img.ID
	if img.ChainID == "" || len(spec.RemapSnapshotOpts(nsOpts)) > 0 {
		cimg, err = backend.FindImage(ctx, s.Deps.Containerd, []string{img.ID}, img.RepoTags, img.RepoDigests)
		if err != nil {
			return "", fmt.Errorf("loading sandbox image %q from containerd: %w", s.Config.SandboxImage, err)
		}
		imageRecord = cimg.Name()
	}
	hostNetwork := nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE

	// 1. Network namespace, in a directory named for the sandbox, so that a
	// crash before the metadata lands can still be found and cleaned.
	// With a POD-mode user namespace, the netns belongs to a new user
	// namespace with the pod's mappings, pinned until the pause joins it.
	var podNS backend.NetNS
	uids, gids, err := spec.UserNamespaceMappings(nsOpts)
	if err != nil {
		return "", err
	}
	usernsPin := ""
	if !hostNetwork {
		if uids != nil {
			podNS, usernsPin, err = s.Deps.Host.NewNetNSInUserns(paths.NetNSDir, uids[0], gids[0])
			if err == nil {
				// The pause task holds the user namespace once created.
				defer func() { _ = s.Deps.Host.UnpinUserns(usernsPin) }()
			}
		} else {
			podNS, err = s.Deps.Host.NewNetNS(paths.NetNSDir)
		}
		if err != nil {
			_ = os.RemoveAll(paths.NetNSDir) // made before the failure
			return "", fmt.Errorf("creating network namespace: %w", err)
		}
		defer func() {
			if retErr != nil && !keep {
				if err := podNS.Remove(); err != nil {
					log.Error(err, "Rollback: removing network namespace")
				}
				if usernsPin != "" {
					_ = s.Deps.Host.UnpinUserns(usernsPin)
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
	if err := WriteFiles(paths, cfg, DefaultHostFiles); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil && !keep {
			if err := s.Deps.Host.UnmountShm(paths.ShmPath()); err != nil {
				log.Error(err, "Rollback: unmounting shm")
			}
			_ = os.RemoveAll(paths.StateDir)
		}
	}()
	shmPath := ""
	if !hostIPC {
		shmPath = paths.ShmPath()
		if err := s.Deps.Host.MountShm(shmPath, ShmSizeBytes); err != nil {
			return "", err
		}
	}

	// 3. The containerd container, carrying our metadata.
	md := Metadata{
		Version:        1,
		ID:             id,
		Name:           name,
		Config:         cfg,
		RuntimeHandler: handler,
		RuntimeType:    rt.Type,
		CreatedAt:      s.Deps.Clock.Now().UnixNano(),
		Phase:          PhaseCreating,
		ImageID:        img.ID,
	}
	if podNS != nil {
		md.NetNSPath = podNS.GetPath()
	}
	specOpts, err := s.SpecGen.SandboxSpecOpts(spec.SandboxParams{
		ID:                      id,
		Config:                  cfg,
		ImageConfig:             img.Config,
		NetNSPath:               md.NetNSPath,
		UsernsPath:              usernsPin,
		HostnamePath:            paths.HostnamePath(),
		HostsPath:               paths.HostsPath(),
		ResolvConfPath:          paths.ResolvConfPath(),
		ShmPath:                 shmPath,
		CgroupParent:            cfg.GetLinux().GetCgroupParent(),
		SystemdCgroup:           s.Config.SystemdCgroup(rt),
		RestrictOOMScoreAdj:     s.RestrictOOMScoreAdj,
		EnableUnprivilegedPorts: s.Config.EnableUnprivilegedPorts,
		EnableUnprivilegedICMP:  s.Config.EnableUnprivilegedICMP,
		ImageName:               s.Config.SandboxImage,
		Annotations:             Annotations(id, cfg),
	})
	if err != nil {
		return "", fmt.Errorf("generating sandbox spec: %w", err)
	}
	// A pause task create that containerd died in can leave a shim that the
	// restarted containerd cannot load (no bootstrap.json yet) and forgets:
	// no removal will ever come for a pod that failed to run, so a failed
	// run whose task create was attempted kills shims still serving its ID,
	// once its containerd container is gone (registered here, it runs after
	// that rollback). The short chaos campaign of 2026-12-06 19:13 left one.
	taskAttempted := false
	defer func() {
		if retErr != nil && !keep && taskAttempted {
			c.reapShims(id, handler)
		}
	}()
	// The mounts of the pause's rootfs, as Prepare returned them: the task
	// is then created with one call (backend.NewTask).
	var rootfs []mount.Mount
	ctr, releaseLease, err := backend.NewContainer(ctx, s.Deps.Containerd, id,
		backend.WithNewSnapshot(id, s.Config.SnapshotterFor(rt), img.ChainID, cimg, spec.RemapSnapshotOpts(nsOpts),
			func(m []mount.Mount) { rootfs = m }),
		containerd.WithImageName(imageRecord),
		containerd.WithRuntime(rt.Type, s.Config.RuncOptions(rt)),
		containerd.WithContainerLabels(map[string]string{LabelKind: KindSandbox}),
		containerd.WithContainerExtension(MetadataExtension, &md),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return "", fmt.Errorf("creating containerd container: %w", err)
	}
	defer func() {
		if retErr != nil && !keep {
			backend.RollbackContainer(ctx, ctr, log, s.Leftovers)
		}
	}()

	// 4. Pod network and the pause task, concurrently: the pause process
	// does not need the network (CNI configures the netns, which the task
	// only joins), so CNI ADD runs while containerd starts the shim and
	// creates the task. The network rollback is registered before ADD: a
	// failed ADD may have allocated an address. When even the retries of DEL
	// without the pod's capability arguments fail, the sandbox is kept
	// NOTREADY rather than dropped with its address.
	var netDone chan struct{}
	var netErr error
	if podNS != nil {
		cniArgs, err := cni.NewPodArgs(id, cfg, c.podCIDRs())
		if err != nil {
			return "", err
		}
		added, attempted := false, true
		defer func() {
			if retErr == nil || !attempted {
				return
			}
			cctx, cancel := backend.CleanupCtx(ctx)
			defer cancel()
			if err := cni.TeardownPod(cctx, s.Deps.Network, id, md.NetNSPath, cniArgs, added); err != nil {
				log.Error(err, "Rollback: CNI DEL failed; keeping the sandbox NOTREADY so that StopPodSandbox/RemovePodSandbox retry")
				keep = true
				c.keepUntorn(cctx, ctr, md, log)
			}
		}()
		netDone = make(chan struct{})
		// Registered after the teardown, so it runs before it: the
		// teardown must know whether ADD succeeded.
		defer func() { <-netDone }()
		go func() {
			defer close(netDone)
			start := time.Now()
			res, err := s.Deps.Network.Setup(ctx, id, md.NetNSPath, cniArgs)
			c.observeCNI("setup", start, err)
			if err != nil {
				// No configuration: no plugin ran, there is nothing to tear down.
				attempted = !errors.Is(err, cni.ErrNetworkNotReady)
				netErr = fmt.Errorf("setting up pod network: %w", err)
				return
			}
			added = true
			if raw, err := json.Marshal(res); err == nil {
				md.CNIResult = raw
			}
			if md.IP, md.AdditionalIPs, err = cni.PodIPs(res); err != nil {
				netErr = fmt.Errorf("pod network for %s: %w", id, err)
			}
		}()
	}
	// The containerd sandbox record, made while containerd starts the
	// shim. Without it (containerd 1.x, or a refusal) the pod works the
	// same, its containers' tasks just find the shim the slower way.
	// The create's lease (the container record holds the snapshot now) goes
	// meanwhile too.
	recErr := errNoRecord
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		releaseLease()
		if s.ShimGroups {
			recErr = c.createRecord(ctx, id, rt.Type)
		}
	}()
	var runEpoch uint64
	if s.ContainerdEpoch != nil {
		runEpoch = s.ContainerdEpoch() + 1
	}
	taskAttempted = true
	startPause, taskErr := backend.NewTask(ctx, s.Deps.Containerd, ctr, rootfs, cio.NullIO)
	<-recDone
	if s.ShimGroups {
		if recErr == nil {
			md.ShimGroup = true
			defer func() {
				if retErr != nil && !keep {
					s.Leftovers.Rollback(ctx, id, "deleting containerd sandbox record", log, func(ctx context.Context) error {
						return c.deleteRecord(ctx, id)
					})
				}
			}()
		} else {
			log.V(2).Info("No containerd sandbox record: the pod's containers start their shim binary", "err", recErr)
		}
	}
	// Registered even when the create failed: a create the request's
	// cancellation cut short may still have made the task in containerd,
	// and the container's rollback cannot delete a container with a task.
	defer func() {
		if retErr != nil {
			s.Leftovers.Rollback(ctx, id, "deleting pause task", log, func(ctx context.Context) error {
				t, err := ctr.Task(ctx, nil)
				if err == nil {
					_, err = t.Delete(ctx, containerd.WithProcessKill)
				}
				return err
			})
		}
	}()
	if netDone != nil {
		<-netDone
		if netErr != nil {
			return "", netErr
		}
	}
	if taskErr != nil {
		return "", fmt.Errorf("creating pause task: %w", taskErr)
	}

	// 5. Start the pause task. The network's result is persisted with the
	// sandbox's final phase: a daemon that dies before that finds the
	// sandbox half-made and tears its network down with the pod's own
	// arguments (recovery), which need no result.
	sb := New(md)
	sb.Container = ctr
	sb.runEpoch = runEpoch
	sb.imageVolumes.Store(false) // none mounted yet
	if err := c.hooks().Run(ctx, sb); err != nil {
		return "", fmt.Errorf("NRI RunPodSandbox: %w", err)
	}
	defer func() {
		if retErr != nil {
			c.hooks().RunFailed(ctx, sb)
		}
	}()
	// The store entry must exist before Start so that the exit event of a
	// pause process that dies at once is not missed.
	if err := s.Store.Add(sb); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			s.Store.Delete(id)
		}
	}()
	pid, err := startPause(ctx)
	if err != nil {
		return "", fmt.Errorf("starting pause task: %w", err)
	}
	if s.SignalDirect {
		sb.init.Open(pid)
	}
	sb.SetReady(pid)
	md = sb.UpdateMetadata(func(m *Metadata) { m.Phase = PhaseCreated })
	if err := backend.SetExtension(ctx, s.Deps.Containerd, id, MetadataExtension, &md); err != nil {
		return "", fmt.Errorf("persisting sandbox state: %w", err)
	}
	c.emit(sb, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	c.emit(sb, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	log.V(2).Info("Pod sandbox running", "ip", md.IP, "pid", pid)
	return id, nil
}

// keepUntornSandbox keeps a sandbox whose RunPodSandbox failed and whose
// network could not be torn down: persisted as half-made and stored
// NOTREADY, with its containerd container, netns and files, as recovery keeps
// one. StopPodSandbox retries the CNI DEL and RemovePodSandbox removes the rest.
func (c *Controller) keepUntorn(ctx context.Context, ctr containerd.Container, md Metadata, log klog.Logger) {
	s := c.o
	md.Phase = PhaseCreating
	if err := ctr.Update(ctx, backend.UpdateExtension(MetadataExtension, &md)); err != nil {
		log.Error(err, "Persisting the kept sandbox")
	}
	sb := New(md)
	sb.Container = ctr
	sb.SetNotReady(255, s.Deps.Clock.Now())
	if err := s.Store.Add(sb); err != nil {
		log.Error(err, "Storing the kept sandbox")
	}
}

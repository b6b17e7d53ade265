package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
)

// CreateContainer creates a container in a ready sandbox: name reservation,
// image lookup, OCI spec, and the containerd container carrying our
// metadata. Every step undoes itself when a later one fails.
func (s *Service) CreateContainer(ctx context.Context, r *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, retErr error) {
	ctx = s.nsCtx(ctx)
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil || cfg.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("container config with metadata name is required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("container image is required: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("finding sandbox %q: %w", r.GetPodSandboxId(), err)
	}
	sbState, sbPid := sb.State()
	if sbState != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	sbMeta := sb.GetMetadata()
	sbCfg := sbMeta.Config
	if r.GetSandboxConfig() != nil {
		sbCfg = r.GetSandboxConfig()
	}
	id := newID()
	name := containerName(cfg.GetMetadata(), sbMeta.Config.GetMetadata())
	if err := s.containerNames.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("reserving container name %q: %w", name, err)
	}
	defer func() {
		if retErr != nil {
			s.containerNames.ReleaseByID(id)
		}
	}()
	log := klog.FromContext(ctx).WithValues("containerID", id, "podSandboxID", sb.ID, "name", cfg.GetMetadata().GetName())

	img, err := s.deps.Images.Get(cfg.GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("resolving image %q: %w", cfg.GetImage().GetImage(), err)
	}
	cimg, err := backend.FindImage(ctx, s.deps.Containerd, []string{img.ID}, img.RepoTags, img.RepoDigests)
	if err != nil {
		return nil, fmt.Errorf("loading image %q from containerd: %w", cfg.GetImage().GetImage(), err)
	}
	handler, rt, err := s.config.RuntimeFor(sbMeta.RuntimeHandler)
	if err != nil {
		return nil, err
	}

	rootDir := filepath.Join(s.config.RootDir, "containers", id)
	if err := os.MkdirAll(rootDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating container dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(rootDir)
		}
	}()
	imageVolumeDir := filepath.Join(rootDir, "volumes")
	logPath := ""
	if cfg.GetLogPath() != "" && sbCfg.GetLogDirectory() != "" {
		logPath = filepath.Join(sbCfg.GetLogDirectory(), cfg.GetLogPath())
	}
	paths := sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sb.ID)
	nsOpts := sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	shmPath := paths.ShmPath()
	if nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE {
		shmPath = ""
	}
	targetPid := uint32(0)
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := s.containers.Get(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId())
		if err != nil {
			return nil, fmt.Errorf("target container for PID namespace: %w", err)
		}
		targetPid = target.Status().Pid
		if targetPid == 0 || target.Status().State() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			return nil, fmt.Errorf("target container %s is not running: %w", target.ID, errdefs.ErrFailedPrecondition)
		}
	}
	netnsPath := sbMeta.NetNSPath
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		netnsPath = ""
	}
	// Image volumes: resolve and mount them, pointing the mounts' host paths there.
	cfg = proto.Clone(cfg).(*runtimeapi.ContainerConfig)
	if err := s.mountImageVolumes(ctx, sb.ID, s.config.SnapshotterFor(rt), cfg.GetMounts()); err != nil {
		return nil, err
	}
	imageName := cfg.GetImage().GetUserSpecifiedImage()
	if imageName == "" {
		imageName = cfg.GetImage().GetImage()
	}
	specOpts, err := s.specGen.ContainerSpecOpts(spec.ContainerParams{
		ID:                        id,
		Name:                      name,
		Config:                    cfg,
		SandboxConfig:             sbCfg,
		SandboxID:                 sb.ID,
		SandboxPid:                sbPid,
		TargetPid:                 targetPid,
		NetNSPath:                 netnsPath,
		ImageConfig:               img.Config,
		ImageName:                 imageName,
		HostnamePath:              paths.HostnamePath(),
		HostsPath:                 paths.HostsPath(),
		ResolvConfPath:            paths.ResolvConfPath(),
		ShmPath:                   shmPath,
		CgroupParent:              sbCfg.GetLinux().GetCgroupParent(),
		SystemdCgroup:             s.config.SystemdCgroup(rt),
		RestrictOOMScoreAdj:       s.restrictOOM,
		DisableAppArmor:           s.config.DisableAppArmor,
		ImageVolumeDir:            imageVolumeDir,
		SupportsRecursiveReadOnly: s.handlerFeatures(handler).GetRecursiveReadOnlyMounts(),
		Annotations:               containerAnnotations(id, cfg.GetMetadata().GetName(), sb.ID, sbCfg, imageName),
	})
	if err != nil {
		return nil, fmt.Errorf("generating container spec: %w", err)
	}
	stopSignal := img.Config.Config.StopSignal
	md := container.Metadata{
		Version:    1,
		ID:         id,
		Name:       name,
		SandboxID:  sb.ID,
		Config:     cfg,
		ImageRef:   img.ID,
		ImageName:  imageName,
		LogPath:    logPath,
		StopSignal: stopSignal,
		CreatedAt:  time.Now().UnixNano(),
	}
	ctr, err := backend.NewContainer(ctx, s.deps.Containerd, id,
		containerd.WithSnapshotter(s.config.SnapshotterFor(rt)),
		containerd.WithNewSnapshot(id, cimg),
		withImageVolumeContent(spec.ImageVolumes(img.Config, cfg.GetMounts(), imageVolumeDir)),
		containerd.WithImageName(cimg.Name()),
		containerd.WithRuntime(rt.Type, s.config.RuncOptions(rt)),
		containerd.WithContainerLabels(map[string]string{
			sandbox.LabelKind:      sandbox.KindContainer,
			sandbox.LabelSandboxID: sb.ID,
		}),
		containerd.WithContainerExtension(container.MetadataExtension, &md),
		containerd.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("creating containerd container: %w", err)
	}
	defer func() {
		if retErr != nil {
			backend.RollbackContainer(ctx, ctr, log)
		}
	}()
	if ociSpec, err := ctr.Spec(ctx); err == nil && ociSpec.Process != nil {
		md.UID = int64(ociSpec.Process.User.UID)
		md.GID = int64(ociSpec.Process.User.GID)
		for _, g := range ociSpec.Process.User.AdditionalGids {
			md.SupplementalGroups = append(md.SupplementalGroups, int64(g))
		}
		if err := ctr.Update(ctx, backend.UpdateExtension(container.MetadataExtension, &md)); err != nil {
			return nil, fmt.Errorf("persisting container metadata: %w", err)
		}
	}
	c := container.New(md, rootDir, container.Status{})
	c.Container = ctr
	if err := c.Update(func(st *container.Status) error {
		st.CreatedAt = md.CreatedAt
		st.Resources = cloneResources(cfg.GetLinux().GetResources())
		return nil
	}); err != nil {
		return nil, err
	}
	if err := s.containers.Add(c); err != nil {
		return nil, err
	}
	s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	log.V(2).Info("Container created")
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// containerName is the unique CRI name of a container.
func containerName(c *runtimeapi.ContainerMetadata, sb *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), sb.GetName(), sb.GetNamespace(), sb.GetUid(), fmt.Sprint(c.GetAttempt())}, "_")
}

func containerAnnotations(id, name, sandboxID string, sbCfg *runtimeapi.PodSandboxConfig, image string) map[string]string {
	return map[string]string{
		"io.kubernetes.cri.container-type":    "container",
		"io.kubernetes.cri.container-name":    name,
		"io.kubernetes.cri.sandbox-id":        sandboxID,
		"io.kubernetes.cri.sandbox-name":      sbCfg.GetMetadata().GetName(),
		"io.kubernetes.cri.sandbox-namespace": sbCfg.GetMetadata().GetNamespace(),
		"io.kubernetes.cri.sandbox-uid":       sbCfg.GetMetadata().GetUid(),
		"io.kubernetes.cri.image-name":        image,
	}
}

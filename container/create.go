package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/imagevolume"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
)

// CreateRequest is what a container is made from (the CRI request).
type CreateRequest struct {
	SandboxID string
	// Config must have metadata with a name and an image (the server
	// validates requests).
	Config *runtimeapi.ContainerConfig
	// SandboxConfig is the pod's config as the client sends it again; nil
	// takes the one the sandbox was run with.
	SandboxConfig *runtimeapi.PodSandboxConfig
}

// createCtx is what the steps of one Create share.
type createCtx struct {
	id, name  string
	sb        *sandbox.Sandbox
	sbMeta    sandbox.Metadata
	sbPid     uint32
	sbCfg     *runtimeapi.PodSandboxConfig
	cfg       *runtimeapi.ContainerConfig
	img       image.Image
	cimg      containerd.Image
	imageName string
	handler   string
	rt        config.Runtime
	rootDir   string
	log       klog.Logger
}

// Create makes a container in a ready sandbox, in steps that each undo
// themselves when a later one fails:
//  1. the CRI name is reserved;
//  2. the image is resolved (image store, then containerd's record);
//  3. the container's directory is made;
//  4. its image volumes are mounted;
//  5. its OCI spec is generated (spec options);
//  6. the containerd container carrying our metadata is made, and the
//     user the spec resolved is persisted in it;
//  7. the status is checkpointed and the container published.
//
// The sandbox missing gives errdefs.ErrNotFound, not ready
// errdefs.ErrFailedPrecondition, a name in use errdefs.ErrAlreadyExists.
func (c *Controller) Create(ctx context.Context, r CreateRequest) (_ *Container, retErr error) {
	sb, err := c.o.Sandboxes.Get(r.SandboxID)
	if err != nil {
		return nil, fmt.Errorf("finding sandbox %q: %w", r.SandboxID, err)
	}
	sbState, sbPid := sb.State()
	if sbState != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	cc := &createCtx{
		id:     sandbox.NewID(),
		sb:     sb,
		sbMeta: sb.GetMetadata(),
		sbPid:  sbPid,
		cfg:    r.Config,
	}
	cc.sbCfg = cc.sbMeta.Config
	if r.SandboxConfig != nil {
		cc.sbCfg = r.SandboxConfig
	}

	// 1. The name.
	cc.name = Name(cc.cfg.GetMetadata(), cc.sbMeta.Config.GetMetadata())
	if err := c.o.Names.Reserve(cc.name, cc.id); err != nil {
		return nil, fmt.Errorf("reserving container name %q: %w", cc.name, err)
	}
	defer func() {
		if retErr != nil {
			c.o.Names.ReleaseByID(cc.id)
		}
	}()
	cc.log = klog.FromContext(ctx).WithValues("containerID", cc.id, "podSandboxID", sb.ID, "name", cc.cfg.GetMetadata().GetName())

	// 2. The image and the runtime.
	if err := c.resolveImage(ctx, cc); err != nil {
		return nil, err
	}
	if cc.handler, cc.rt, err = c.o.Config.RuntimeFor(cc.sbMeta.RuntimeHandler); err != nil {
		return nil, err
	}

	// 3. The container's directory.
	cc.rootDir = filepath.Join(c.o.Config.RootDir, "containers", cc.id)
	if err := os.MkdirAll(cc.rootDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating container dir: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = os.RemoveAll(cc.rootDir)
		}
	}()

	// 4. Image volumes: resolve and mount them, pointing the mounts' host
	// paths there (in a copy of the config, which is persisted).
	cc.cfg = proto.Clone(cc.cfg).(*runtimeapi.ContainerConfig)
	paths := sandbox.PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, sb.ID)
	if imagevolume.Needed(cc.cfg.GetMounts()) {
		sb.MarkImageVolumes() // the pod's removal releases them
	}
	if err := imagevolume.Mount(ctx, c.o.Deps.Containerd, c.o.Deps.Images, imagevolume.Dir(paths.StateDir), sb.ID, c.o.Config.SnapshotterFor(cc.rt), cc.cfg.GetMounts()); err != nil {
		return nil, err
	}

	// 5. The OCI spec.
	specOpts, err := c.specOpts(cc)
	if err != nil {
		return nil, err
	}
	hookOpt, hookUndo := c.createHook(cc) // NRI adjusts the spec last
	defer func() { hookUndo(ctx, retErr != nil) }()
	specOpts = append(specOpts, hookOpt)

	// 6. The containerd container.
	md, ctr, rootfs, err := c.newContainerdContainer(ctx, cc, specOpts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			backend.RollbackContainer(ctx, ctr, cc.log, c.o.Leftovers)
		}
	}()

	// 7. Checkpoint and publish.
	ctrObj := New(md, cc.rootDir, Status{})
	ctrObj.Container = ctr
	ctrObj.rootfs = rootfs
	ctrObj.noTask.Store(true)
	if err := ctrObj.Update(func(st *Status) error {
		st.CreatedAt = md.CreatedAt
		st.Resources = CloneResources(cc.cfg.GetLinux().GetResources())
		return nil
	}); err != nil {
		return nil, err
	}
	if err := c.o.Store.Add(ctrObj); err != nil {
		return nil, err
	}
	c.o.OnEvent(ctrObj, runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT)
	cc.log.V(2).Info("Container created")
	return ctrObj, nil
}

// imageRecord is the name of the image's containerd record.
func (cc *createCtx) imageRecord() string {
	if cc.cimg != nil {
		return cc.cimg.Name()
	}
	return cc.img.ID
}

// resolveImage finds the container's image in the image store and its
// record in containerd.
func (c *Controller) resolveImage(ctx context.Context, cc *createCtx) error {
	ref := cc.cfg.GetImage().GetImage()
	img, err := c.o.Deps.Images.Get(ref)
	if err != nil {
		return fmt.Errorf("resolving image %q: %w", ref, err)
	}
	cc.img = img
	// containerd's image record is needed only to resolve what the image
	// store does not know (a chain ID) or for an ID-remapped snapshot;
	// otherwise the container names the record the image store made under
	// the image's ID, without a round trip.
	if img.ChainID == "" || len(spec.RemapSnapshotOpts(cc.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())) > 0 {
		cimg, err := backend.FindImage(ctx, c.o.Deps.Containerd, []string{img.ID}, img.RepoTags, img.RepoDigests)
		if err != nil {
			return fmt.Errorf("loading image %q from containerd: %w", ref, err)
		}
		cc.cimg = cimg
	}
	cc.imageName = cc.cfg.GetImage().GetUserSpecifiedImage()
	if cc.imageName == "" {
		cc.imageName = ref
	}
	return nil
}

// imageVolumeDir holds the host directories backing the image config's
// VOLUMEs of a container.
func imageVolumeDir(rootDir string) string { return filepath.Join(rootDir, "volumes") }

// specOpts generates the container's OCI spec options.
func (c *Controller) specOpts(cc *createCtx) ([]oci.SpecOpts, error) {
	cfg, sbCfg := cc.cfg, cc.sbCfg
	paths := sandbox.PathsFor(c.o.Config.RootDir, c.o.Config.StateDir, cc.sb.ID)
	nsOpts := sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	shmPath := paths.ShmPath()
	if nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE {
		shmPath = ""
	}
	targetPid := uint32(0)
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := c.o.Store.Get(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId())
		if err != nil {
			return nil, fmt.Errorf("target container for PID namespace: %w", err)
		}
		targetPid = target.Status().Pid
		if targetPid == 0 || target.Status().State() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			return nil, fmt.Errorf("target container %s is not running: %w", target.ID, errdefs.ErrFailedPrecondition)
		}
	}
	netnsPath := cc.sbMeta.NetNSPath
	if nsOpts.GetNetwork() == runtimeapi.NamespaceMode_NODE {
		netnsPath = ""
	}
	opts, err := c.o.SpecGen.ContainerSpecOpts(spec.ContainerParams{
		ID:                        cc.id,
		Name:                      cc.name,
		Config:                    cfg,
		SandboxConfig:             sbCfg,
		SandboxID:                 cc.sb.ID,
		SandboxPid:                cc.sbPid,
		TargetPid:                 targetPid,
		NetNSPath:                 netnsPath,
		ImageConfig:               cc.img.Config,
		ImageName:                 cc.imageName,
		HostnamePath:              paths.HostnamePath(),
		HostsPath:                 paths.HostsPath(),
		ResolvConfPath:            paths.ResolvConfPath(),
		ShmPath:                   shmPath,
		CgroupParent:              sbCfg.GetLinux().GetCgroupParent(),
		SystemdCgroup:             c.o.Config.SystemdCgroup(cc.rt),
		RestrictOOMScoreAdj:       c.o.RestrictOOM,
		DisableAppArmor:           c.o.Config.DisableAppArmor,
		ImageVolumeDir:            imageVolumeDir(cc.rootDir),
		SupportsRecursiveReadOnly: c.o.HandlerFeatures(cc.handler).GetRecursiveReadOnlyMounts(),
		Annotations:               Annotations(cc.id, cfg.GetMetadata().GetName(), cc.sb.ID, sbCfg, cc.imageName),
	})
	if err != nil {
		return nil, fmt.Errorf("generating container spec: %w", err)
	}
	return opts, nil
}

// newContainerdContainer makes the containerd container (snapshot, image
// volume content, runtime, labels, the spec, our metadata with the user the
// spec resolved) in one containerd call. A failure leaves nothing.
func (c *Controller) newContainerdContainer(ctx context.Context, cc *createCtx, specOpts []oci.SpecOpts) (Metadata, containerd.Container, []mount.Mount, error) {
	cfg := cc.cfg
	md := Metadata{
		Version:    1,
		ID:         cc.id,
		Name:       cc.name,
		SandboxID:  cc.sb.ID,
		Config:     cfg,
		ImageRef:   cc.img.ID,
		ImageName:  cc.imageName,
		LogPath:    logPath(cfg, cc.sbCfg),
		StopSignal: cc.img.Config.Config.StopSignal,
		CreatedAt:  c.now().UnixNano(),
	}
	snapshotter := c.o.Config.SnapshotterFor(cc.rt)
	rootfs := &preparedRootfs{}
	// The extension is marshalled when its option runs: after the spec's,
	// which fills in the user the spec resolved, so that the record is
	// complete when made (no read of the spec and update afterwards).
	opts := []containerd.NewContainerOpts{
		backend.WithNewSnapshot(cc.id, snapshotter, cc.img.ChainID, cc.cimg, spec.RemapSnapshotOpts(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()),
			func(m []mount.Mount) { rootfs.set(snapshotter, cc.id, m) }),
		withImageVolumeContent(rootfs, spec.ImageVolumes(cc.img.Config, cfg.GetMounts(), imageVolumeDir(cc.rootDir))),
		containerd.WithImageName(cc.imageRecord()),
		containerd.WithRuntime(cc.rt.Type, c.o.Config.RuncOptions(cc.rt)),
		containerd.WithContainerLabels(map[string]string{
			sandbox.LabelKind:      sandbox.KindContainer,
			sandbox.LabelSandboxID: cc.sb.ID,
		}),
		containerd.WithNewSpec(rootfs.withSpecOpts(append(specOpts, withUserOf(&md))...)),
		containerd.WithContainerExtension(MetadataExtension, &md),
	}
	if cc.sbMeta.ShimGroup {
		// Its task is made in the pause's shim (sandbox.Metadata.ShimGroup).
		opts = append(opts, containerd.WithSandbox(cc.sb.ID))
	}
	ctr, release, err := backend.NewContainer(ctx, c.o.Deps.Containerd, cc.id, opts...)
	if err != nil {
		return md, nil, nil, fmt.Errorf("creating containerd container: %w", err)
	}
	// The record holds the snapshot now: the lease goes after the reply.
	if !c.o.Go(func(context.Context) { release() }) {
		release()
	}
	return md, ctr, rootfs.mounts, nil
}

// withUserOf records in md the user the spec resolved (ContainerStatus
// reports it). It runs last among the spec's options.
func withUserOf(md *Metadata) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			return nil
		}
		md.UID = int64(s.Process.User.UID)
		md.GID = int64(s.Process.User.GID)
		md.SupplementalGroups = nil
		for _, g := range s.Process.User.AdditionalGids {
			md.SupplementalGroups = append(md.SupplementalGroups, int64(g))
		}
		return nil
	}
}

// logPath is the container's CRI log file ("" when not logged).
func logPath(cfg *runtimeapi.ContainerConfig, sbCfg *runtimeapi.PodSandboxConfig) string {
	if cfg.GetLogPath() != "" && sbCfg.GetLogDirectory() != "" {
		return filepath.Join(sbCfg.GetLogDirectory(), cfg.GetLogPath())
	}
	return ""
}

// Name is the unique CRI name of a container.
func Name(c *runtimeapi.ContainerMetadata, sb *runtimeapi.PodSandboxMetadata) string {
	return strings.Join([]string{c.GetName(), sb.GetName(), sb.GetNamespace(), sb.GetUid(), fmt.Sprint(c.GetAttempt())}, "_")
}

// The CRI annotations of a container's spec (recovery rebuilds unreadable
// metadata from them).
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
)

// Annotations are the CRI annotations of a container's spec.
func Annotations(id, name, sandboxID string, sbCfg *runtimeapi.PodSandboxConfig, image string) map[string]string {
	return map[string]string{
		AnnotationContainerType:    "container",
		AnnotationContainerName:    name,
		AnnotationSandboxID:        sandboxID,
		AnnotationSandboxName:      sbCfg.GetMetadata().GetName(),
		AnnotationSandboxNamespace: sbCfg.GetMetadata().GetNamespace(),
		AnnotationSandboxUID:       sbCfg.GetMetadata().GetUid(),
		AnnotationImageName:        image,
	}
}

// Package spec turns CRI pod sandbox and container configs into containerd
// oci.SpecOpts lists, for client.WithNewSpec(opts...). The behaviour follows
// containerd's built-in CRI plugin (internal/cri/server and internal/cri/opts
// of containerd v2.4): the same defaults, the same order of options and the
// same treatment of every CRI field, with a few documented deviations that
// only avoid runtime failures.
//
// The option lists must be applied after client.WithNewSnapshot: the user
// options (oci.WithUser, oci.WithAdditionalGIDs) read /etc/passwd and
// /etc/group from the container's snapshot.
//
// Errors wrap github.com/containerd/errdefs sentinels (ErrInvalidArgument,
// ErrFailedPrecondition, ErrNotImplemented) so that the server maps them to
// gRPC codes in one place. Errors raised while the options are applied (inside
// client.NewContainer) are wrapped the same way where the cause is known.
package spec

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotation keys set on the OCI spec, as containerd's CRI plugin does.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"

	// ContainerTypeSandbox and ContainerTypeContainer are the values of
	// AnnotationContainerType.
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

const (
	// DefaultSandboxOOMScoreAdj is the pause process's oom_score_adj (before clamping).
	DefaultSandboxOOMScoreAdj = -998
	// DefaultSandboxCPUShares is the pause container's cpu shares.
	DefaultSandboxCPUShares = 2
	// AppArmorDefaultProfile is the name of the runtime/default AppArmor profile.
	AppArmorDefaultProfile = "cri-containerd.apparmor.d"
	// CgroupSystemdPrefix is the middle part of "slice:prefix:name" systemd cgroup paths.
	CgroupSystemdPrefix = "cri-containerd"
)

// SandboxParams is everything the pause container's spec needs.
type SandboxParams struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// ImageConfig is the pause image's config; its entrypoint+cmd is run.
	ImageConfig ocispec.Image
	// ImageName is the sandbox image reference, recorded in the
	// io.kubernetes.cri.podsandbox.image-name annotation ("" to omit).
	ImageName string
	// NetNSPath is the pod's network namespace; "" only for host network.
	NetNSPath string
	// UsernsPath is the user namespace owning NetNSPath, made with it for a
	// POD-mode user namespace (required then, unless host network).
	UsernsPath string
	// HostnamePath and HostsPath are unused by the pause container (kept for
	// symmetry with ContainerParams); ResolvConfPath is bind-mounted read-only
	// at /etc/resolv.conf when non-empty.
	HostnamePath, HostsPath, ResolvConfPath string
	// ShmPath is bind-mounted at /dev/shm; "" with host IPC uses the host's /dev/shm.
	ShmPath string
	// CgroupParent (falls back to Config's Linux.CgroupParent when empty):
	// the pause cgroup is <parent>/<id> (cgroupfs) or
	// <base(parent)>:cri-containerd:<id> (systemd).
	CgroupParent  string
	SystemdCgroup bool
	// RestrictOOMScoreAdj clamps oom_score_adj to no lower than the daemon's own.
	RestrictOOMScoreAdj bool
	// EnableUnprivilegedPorts adds net.ipv4.ip_unprivileged_port_start=0 and
	// EnableUnprivilegedICMP adds net.ipv4.ping_group_range="0 2147483647"
	// (both only without host network and when the pod does not set them).
	EnableUnprivilegedPorts, EnableUnprivilegedICMP bool
	// SeccompProfileRoot resolves relative Localhost seccomp profiles.
	SeccompProfileRoot string
	// PodAnnotationPatterns selects (path.Match globs) the pod annotations
	// passed through to the spec, like containerd's runtime pod_annotations.
	PodAnnotationPatterns []string
	// Annotations are set last and win over the defaults computed here.
	Annotations map[string]string

	// rootfs, when set, is an absolute root path used instead of the bundle's
	// relative "rootfs" (tests resolve users against it).
	rootfs string
}

// ContainerParams is everything a workload container's spec needs.
type ContainerParams struct {
	ID string
	// Name is used for the container-name annotation only when
	// Config.Metadata.Name is empty.
	Name          string
	Config        *runtimeapi.ContainerConfig
	SandboxConfig *runtimeapi.PodSandboxConfig
	SandboxID     string
	// SandboxPid is the pause process, whose IPC/UTS/PID (and network when
	// NetNSPath is "") namespaces the container joins.
	SandboxPid uint32
	// TargetPid is the process whose PID namespace is joined for
	// NamespaceMode_TARGET.
	TargetPid uint32
	// NetNSPath is the sandbox network namespace ("" = host network or
	// /proc/<SandboxPid>/ns/net).
	NetNSPath   string
	ImageConfig ocispec.Image
	// ImageName is the user-facing image reference (io.kubernetes.cri.image-name).
	ImageName string
	// The sandbox's files, bind-mounted at /etc/hostname, /etc/hosts,
	// /etc/resolv.conf and /dev/shm unless a CRI mount has the destination or
	// the file does not exist. ShmPath "" with host IPC means the host /dev/shm.
	HostnamePath, HostsPath, ResolvConfPath, ShmPath string
	// CgroupParent is the sandbox's Linux.CgroupParent (falls back to
	// SandboxConfig's when empty).
	CgroupParent        string
	SystemdCgroup       bool
	RestrictOOMScoreAdj bool
	// SeccompProfileRoot resolves relative Localhost seccomp profiles.
	SeccompProfileRoot string
	// DisableAppArmor behaves like a host without AppArmor.
	DisableAppArmor bool
	// ImageVolumeDir: when non-empty, the image config's Volumes become bind
	// mounts of directories created under it; otherwise they are ignored.
	ImageVolumeDir string
	// SupportsRecursiveReadOnly tells whether the runtime handler can do
	// recursive read-only ("rro") mounts.
	SupportsRecursiveReadOnly bool
	// PrivilegedWithoutHostDevices keeps host devices out of privileged containers.
	PrivilegedWithoutHostDevices bool
	// DeviceOwnershipFromSecurityContext sets CRI devices' uid/gid from
	// RunAsUser/RunAsGroup.
	DeviceOwnershipFromSecurityContext bool
	// PodAnnotationPatterns and ContainerAnnotationPatterns select (path.Match
	// globs) the sandbox and container annotations passed through to the spec.
	PodAnnotationPatterns, ContainerAnnotationPatterns []string
	// Annotations are set last and win over the defaults computed here.
	Annotations map[string]string

	// rootfs, when set, is an absolute root path used instead of the bundle's
	// relative "rootfs" (tests resolve users against it).
	rootfs string
}

package spec

import (
	"maps"
	"slices"
	"strconv"

	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	sysctlUnprivilegedPortStart = "net.ipv4.ip_unprivileged_port_start"
	sysctlPingGroupRange        = "net.ipv4.ping_group_range"
)

// SandboxSpecOpts returns the options that build the pause container's OCI
// spec on top of containerd's default Linux spec: the image's entrypoint+cmd,
// a read-only rootfs, the pod's namespaces, /dev/shm and resolv.conf, the
// pod sysctls, cpu shares 2, oom_score_adj -998 (clamped when restricted),
// the pod's seccomp profile and user, and the CRI annotations.
func (g *Generator) SandboxSpecOpts(p SandboxParams) ([]oci.SpecOpts, error) {
	cfg := p.Config
	if cfg == nil {
		return nil, invalidArgument("sandbox config is required")
	}
	img := p.ImageConfig.Config
	sc := cfg.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	hostNet := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := ns.GetIpc() == runtimeapi.NamespaceMode_NODE

	if len(img.Entrypoint) == 0 && len(img.Cmd) == 0 {
		return nil, invalidArgument("invalid empty entrypoint and cmd in the sandbox image config")
	}
	if !hostNet && p.NetNSPath == "" {
		return nil, invalidArgument("a network namespace path is required without host network")
	}
	uids, gids, err := UserNamespaceMappings(ns)
	if err != nil {
		return nil, err
	}
	userns := uids != nil
	if userns && !hostNet && p.UsernsPath == "" {
		return nil, invalidArgument("a user namespace path (the owner of the pod's network namespace) is required for a POD-mode user namespace without host network")
	}
	userstr, err := userString("", sc.GetRunAsUser(), sc.GetRunAsGroup())
	if err != nil {
		return nil, err
	}
	if err := validateGroups(sc.GetSupplementalGroups()); err != nil {
		return nil, err
	}
	seccomp, err := g.seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged(), p.SeccompProfileRoot) //nolint:staticcheck // deprecated field still honoured
	if err != nil {
		return nil, err
	}
	adj, err := g.clampOOMScoreAdj(DefaultSandboxOOMScoreAdj, p.RestrictOOMScoreAdj)
	if err != nil {
		return nil, err
	}

	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutDefaultSecuritySettings,
		withRoot(p.rootfs),
		oci.WithEnv(img.Env),
		oci.WithRootFSReadonly(),
	}
	// runc refuses a hostname without a private UTS namespace, which host
	// network pods do not have (kubelet sends none for them anyway).
	if !hostNet {
		opts = append(opts, oci.WithHostname(cfg.GetHostname()))
	}
	if img.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(img.WorkingDir))
	}
	opts = append(opts, oci.WithProcessArgs(append(slices.Clone(img.Entrypoint), img.Cmd...)...))
	parent := p.CgroupParent
	if parent == "" {
		parent = cfg.GetLinux().GetCgroupParent()
	}
	if cg := CgroupsPath(parent, p.ID, p.SystemdCgroup); cg != "" {
		opts = append(opts, oci.WithCgroup(cg))
	}

	// Namespaces: the pod's own network (from CNI) or the host's, UTS with
	// the network, new PID and IPC unless the host's.
	if hostNet {
		opts = append(opts, oci.WithHostNamespace(runtimespec.NetworkNamespace), oci.WithHostNamespace(runtimespec.UTSNamespace))
	} else {
		opts = append(opts, oci.WithLinuxNamespace(runtimespec.LinuxNamespace{Type: runtimespec.NetworkNamespace, Path: p.NetNSPath}))
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_NODE {
		opts = append(opts, oci.WithHostNamespace(runtimespec.PIDNamespace))
	}
	if hostIPC {
		opts = append(opts, oci.WithHostNamespace(runtimespec.IPCNamespace))
	}
	// A POD-mode user namespace: the one owning the pod's network namespace
	// (made with it), or with host network a new one.
	if userns {
		opts = append(opts, withUserNamespace(p.UsernsPath, uids, gids))
		if hostNet {
			opts = append(opts, withSysBind)
		}
	}

	// /dev/shm: the pod's (or the host's with host IPC) replaces the default
	// tmpfs; the pause process only needs it read-only.
	shm := p.ShmPath
	if hostIPC {
		shm = devShm
	}
	bindOpts := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
	var mounts []runtimespec.Mount
	if shm != "" {
		opts = append(opts, oci.WithoutMounts(devShm))
		mounts = append(mounts, runtimespec.Mount{Source: shm, Destination: devShm, Type: "bind", Options: slices.Clone(bindOpts)})
	}
	if p.ResolvConfPath != "" {
		mounts = append(mounts, runtimespec.Mount{Source: p.ResolvConfPath, Destination: etcResolvConf, Type: "bind", Options: slices.Clone(bindOpts)})
	}
	if len(mounts) > 0 {
		opts = append(opts, oci.WithMounts(mounts))
	}

	// Sysctls are pod-level: the containers share the pause's IPC and
	// network namespaces, so setting them here covers the pod.
	sysctls := maps.Clone(cfg.GetLinux().GetSysctls())
	if sysctls == nil {
		sysctls = map[string]string{}
	}
	if !hostNet {
		if _, ok := sysctls[sysctlUnprivilegedPortStart]; p.EnableUnprivilegedPorts && !ok {
			sysctls[sysctlUnprivilegedPortStart] = "0"
		}
		// The range covers gids a pod's user namespace does not map.
		if _, ok := sysctls[sysctlPingGroupRange]; p.EnableUnprivilegedICMP && !ok && !g.host.runningInUserNS() && !userns {
			sysctls[sysctlPingGroupRange] = "0 2147483647"
		}
	}
	opts = append(opts,
		withSysctls(sysctls),
		withCPUSharesOnly(DefaultSandboxCPUShares),
		withOOMScoreAdj(adj),
		oci.WithAnnotations(sandboxAnnotations(p)),
	)
	if seccomp != nil {
		opts = append(opts, seccomp)
	}
	// User: run_as_user[:run_as_group], else the image USER; then the pod's
	// supplemental groups (after the user, which resets them).
	if userstr == "" {
		userstr = img.User
	}
	if userstr != "" {
		opts = append(opts, withUser(userstr))
	}
	opts = append(opts, withSupplementalGroups(sc.GetSupplementalGroups()))
	return opts, nil
}

func sandboxAnnotations(p SandboxParams) map[string]string {
	cfg := p.Config
	a := map[string]string{}
	passthroughAnnotations(a, cfg.GetAnnotations(), p.PodAnnotationPatterns)
	if r := cfg.GetLinux().GetResources(); r != nil {
		a[AnnotationSandboxCPUPeriod] = strconv.FormatInt(r.GetCpuPeriod(), 10)
		a[AnnotationSandboxCPUQuota] = strconv.FormatInt(r.GetCpuQuota(), 10)
		a[AnnotationSandboxCPUShares] = strconv.FormatInt(r.GetCpuShares(), 10)
		a[AnnotationSandboxMemory] = strconv.FormatInt(r.GetMemoryLimitInBytes(), 10)
	}
	md := cfg.GetMetadata()
	a[AnnotationSandboxID] = p.ID
	a[AnnotationSandboxNamespace] = md.GetNamespace()
	a[AnnotationSandboxUID] = md.GetUid()
	a[AnnotationSandboxName] = md.GetName()
	a[AnnotationSandboxLogDir] = cfg.GetLogDirectory()
	if p.ImageName != "" {
		a[AnnotationSandboxImageName] = p.ImageName
	}
	a[AnnotationContainerType] = ContainerTypeSandbox
	maps.Copy(a, p.Annotations)
	return a
}

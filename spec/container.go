package spec

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ContainerSpecOpts returns the options that build a workload container's
// OCI spec on top of containerd's default Linux spec. Validation errors, host
// path creation and mount propagation checks happen here; options that read
// the image's /etc/passwd and /etc/group (user, groups) and the host's /dev
// (devices) run when the list is applied.
func (g *Generator) ContainerSpecOpts(p ContainerParams) ([]oci.SpecOpts, error) {
	cfg := p.Config
	if cfg == nil {
		return nil, invalidArgument("container config is required")
	}
	sbCfg := p.SandboxConfig
	img := p.ImageConfig.Config
	sc := cfg.GetLinux().GetSecurityContext()
	nsOpts := sc.GetNamespaceOptions()
	sbNS := sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	privileged := sc.GetPrivileged()

	// Validation first: nothing below touches the host until it passes.
	args, err := containerArgs(cfg, &img)
	if err != nil {
		return nil, err
	}
	if privileged && !sbCfg.GetLinux().GetSecurityContext().GetPrivileged() {
		return nil, invalidArgument("no privileged container allowed in sandbox")
	}
	if err := sameUserns(nsOpts, sbNS); err != nil {
		return nil, err
	}
	cdiOpts, err := g.cdiOpts(cfg)
	if err != nil {
		return nil, err
	}
	userstr, err := userString(sc.GetRunAsUsername(), sc.GetRunAsUser(), sc.GetRunAsGroup())
	if err != nil {
		return nil, err
	}
	if err := validateGroups(sc.GetSupplementalGroups()); err != nil {
		return nil, err
	}
	policy := sc.GetSupplementalGroupsPolicy()
	if policy != runtimeapi.SupplementalGroupsPolicy_Merge && policy != runtimeapi.SupplementalGroupsPolicy_Strict {
		return nil, notImplemented("supplemental groups policy %v", policy)
	}
	nsSpecOpts, err := containerNamespaces(p)
	if err != nil {
		return nil, err
	}
	capOpt, err := g.capabilityOpt(sc.GetCapabilities())
	if err != nil {
		return nil, err
	}
	apparmor, err := g.apparmorOpt(sc.GetApparmor(), sc.GetApparmorProfile(), privileged, p.DisableAppArmor) //nolint:staticcheck // deprecated field still honoured
	if err != nil {
		return nil, err
	}
	seccomp, err := g.seccompOpt(sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged, p.SeccompProfileRoot) //nolint:staticcheck // deprecated field still honoured
	if err != nil {
		return nil, err
	}

	hostname := sbCfg.GetHostname()
	if hostname == "" {
		if hostname, err = g.host.hostname(); err != nil {
			return nil, fmt.Errorf("getting the host name: %w", err)
		}
	}

	hostIPC := nsOpts.GetIpc() == runtimeapi.NamespaceMode_NODE || sbNS.GetIpc() == runtimeapi.NamespaceMode_NODE
	cgroupNS := g.host.cgroupUnified() && !privileged
	plan, err := g.planMounts(cfg, extraMounts(p, hostIPC), p.SupportsRecursiveReadOnly, cgroupNS)
	if err != nil {
		return nil, err
	}

	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutDefaultSecuritySettings,
		withRoot(p.rootfs),
		oci.WithProcessArgs(args...),
		oci.WithDefaultPathEnv,
		// Set from the security context below.
		oci.WithNewPrivileges,
	}
	if wd := cfg.GetWorkingDir(); wd != "" {
		opts = append(opts, oci.WithProcessCwd(wd))
	} else if img.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(img.WorkingDir))
	}
	if cfg.GetTty() {
		opts = append(opts, oci.WithTTY)
	}
	// HOSTNAME, then the image's env, then CRI's, each replacing what came
	// before. (containerd passes image and CRI env in one oci.WithEnv call,
	// which keeps both values of a key the CRI overrides; separate calls
	// make the CRI value replace the image's.)
	var criEnv []string
	for _, e := range cfg.GetEnvs() {
		criEnv = append(criEnv, e.GetKey()+"="+string(e.GetValue()))
	}
	opts = append(opts,
		oci.WithEnv([]string{hostnameEnv + "=" + hostname}),
		oci.WithEnv(img.Env),
		oci.WithEnv(criEnv),
	)

	if cgroupNS {
		opts = append(opts, oci.WithLinuxNamespace(runtimespec.LinuxNamespace{Type: runtimespec.CgroupNamespace}))
	}
	opts = append(opts, withContainerMounts(plan))

	// containerd's default masked/readonly paths are replaced by the CRI
	// lists; unset lists mean none (kubelet always sends them).
	opts = append(opts, oci.WithMaskedPaths([]string{}), oci.WithReadonlyPaths([]string{}))
	if mp := sc.GetMaskedPaths(); mp != nil {
		opts = append(opts, oci.WithMaskedPaths(mp))
	}
	if rp := sc.GetReadonlyPaths(); rp != nil {
		opts = append(opts, oci.WithReadonlyPaths(rp))
	}

	opts = append(opts, devicesOpt(cfg, p.DeviceOwnershipFromSecurityContext))
	if capOpt != nil {
		opts = append(opts, capOpt)
	}
	if privileged {
		opts = append(opts, oci.WithPrivileged)
		if !p.PrivilegedWithoutHostDevices {
			opts = append(opts, oci.WithHostDevices, oci.WithAllDevicesAllowed)
		}
	}
	opts = append(opts, withoutAmbientCaps)
	if sc.GetNoNewPrivs() {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sc.GetReadonlyRootfs() {
		opts = append(opts, oci.WithRootFSReadonly())
	}

	opts = append(opts, g.withResources(cfg.GetLinux().GetResources()))
	parent := p.CgroupParent
	if parent == "" {
		parent = sbCfg.GetLinux().GetCgroupParent()
	}
	if cg := CgroupsPath(parent, p.ID, p.SystemdCgroup); cg != "" {
		opts = append(opts, oci.WithCgroup(cg))
	}
	if r := cfg.GetLinux().GetResources(); r != nil {
		adj, err := g.clampOOMScoreAdj(int(r.GetOomScoreAdj()), p.RestrictOOMScoreAdj)
		if err != nil {
			return nil, err
		}
		opts = append(opts, withOOMScoreAdj(adj))
	}
	opts = append(opts, nsSpecOpts...)
	opts = append(opts, oci.WithAnnotations(containerAnnotations(p)))

	// User and groups: read from the image's rootfs, after everything else
	// that touches the process user.
	if userstr == "" {
		userstr = img.User
	}
	if userstr != "" {
		opts = append(opts, withUser(userstr))
	}
	if policy == runtimeapi.SupplementalGroupsPolicy_Merge {
		opts = append(opts, withMergedAdditionalGIDs(groupLookupUser(sc, img.User)))
	}
	opts = append(opts, withSupplementalGroups(sc.GetSupplementalGroups()))

	if apparmor != nil {
		opts = append(opts, apparmor)
	}
	// The default seccomp profile depends on the capabilities: keep it last.
	if seccomp != nil {
		opts = append(opts, seccomp)
	}
	// CDI edits (device nodes, mounts, env, hooks) go on top of everything.
	opts = append(opts, cdiOpts...)
	return opts, nil
}

// containerArgs follows docker/containerd: Command replaces the image's
// Entrypoint and drops its Cmd; Args replace Cmd. An image Entrypoint of
// [""] means none.
func containerArgs(cfg *runtimeapi.ContainerConfig, img *ocispec.ImageConfig) ([]string, error) {
	command, args := cfg.GetCommand(), cfg.GetArgs()
	if len(command) == 0 {
		if len(args) == 0 {
			args = slices.Clone(img.Cmd)
		}
		if command == nil && (len(img.Entrypoint) != 1 || img.Entrypoint[0] != "") {
			command = slices.Clone(img.Entrypoint)
		}
	}
	if len(command) == 0 && len(args) == 0 {
		return nil, invalidArgument("no command specified")
	}
	return append(slices.Clone(command), args...), nil
}

// groupLookupUser is the user whose /etc/group memberships are merged:
// run_as_username, run_as_user, the image USER (without group), else root.
func groupLookupUser(sc *runtimeapi.LinuxContainerSecurityContext, imageUser string) string {
	switch {
	case sc.GetRunAsUsername() != "":
		return sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		return strconv.FormatInt(sc.GetRunAsUser().GetValue(), 10)
	case imageUser != "":
		u, _, _ := strings.Cut(imageUser, ":")
		return u
	}
	return "0"
}

// containerNamespaces joins the sandbox's namespaces: network through
// NetNSPath (or the pause's), IPC and UTS through the pause process, PID per
// the container's mode; host namespaces stay the host's. The mount namespace
// is always new.
func containerNamespaces(p ContainerParams) ([]oci.SpecOpts, error) {
	ctr := p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	sb := p.SandboxConfig.GetLinux().GetSecurityContext().GetNamespaceOptions()
	hostNet := ctr.GetNetwork() == runtimeapi.NamespaceMode_NODE || sb.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := ctr.GetIpc() == runtimeapi.NamespaceMode_NODE || sb.GetIpc() == runtimeapi.NamespaceMode_NODE
	pausePath := func(format string) (string, error) {
		if p.SandboxPid == 0 {
			return "", failedPrecondition("sandbox %s has no running pause process", p.SandboxID)
		}
		return fmt.Sprintf(format, p.SandboxPid), nil
	}
	join := func(t runtimespec.LinuxNamespaceType, path string) oci.SpecOpts {
		return oci.WithLinuxNamespace(runtimespec.LinuxNamespace{Type: t, Path: path})
	}
	var opts []oci.SpecOpts

	switch {
	case hostNet:
		opts = append(opts, oci.WithHostNamespace(runtimespec.NetworkNamespace), oci.WithHostNamespace(runtimespec.UTSNamespace))
	default:
		netPath := p.NetNSPath
		if netPath == "" {
			var err error
			if netPath, err = pausePath(netNSFormat); err != nil {
				return nil, err
			}
		}
		uts, err := pausePath(utsNSFormat)
		if err != nil {
			return nil, err
		}
		opts = append(opts, join(runtimespec.NetworkNamespace, netPath), join(runtimespec.UTSNamespace, uts))
	}

	if hostIPC {
		opts = append(opts, oci.WithHostNamespace(runtimespec.IPCNamespace))
	} else {
		ipc, err := pausePath(ipcNSFormat)
		if err != nil {
			return nil, err
		}
		opts = append(opts, join(runtimespec.IPCNamespace, ipc))
	}

	switch ctr.GetPid() {
	case runtimeapi.NamespaceMode_CONTAINER:
		// The default spec's new PID namespace.
	case runtimeapi.NamespaceMode_NODE:
		opts = append(opts, oci.WithHostNamespace(runtimespec.PIDNamespace))
	case runtimeapi.NamespaceMode_TARGET:
		if p.TargetPid == 0 {
			return nil, failedPrecondition("target container %q for the PID namespace is not running", ctr.GetTargetId())
		}
		opts = append(opts, join(runtimespec.PIDNamespace, fmt.Sprintf(pidNSFormat, p.TargetPid)))
	default: // POD
		if sb.GetPid() == runtimeapi.NamespaceMode_NODE {
			opts = append(opts, oci.WithHostNamespace(runtimespec.PIDNamespace))
			break
		}
		pid, err := pausePath(pidNSFormat)
		if err != nil {
			return nil, err
		}
		opts = append(opts, join(runtimespec.PIDNamespace, pid))
	}

	// A POD-mode user namespace is the pause's (validated equal to the pod's).
	uids, gids, err := UserNamespaceMappings(ctr)
	if err != nil {
		return nil, err
	}
	if uids != nil {
		userPath, err := pausePath(userNSFormat)
		if err != nil {
			return nil, err
		}
		opts = append(opts, withUserNamespace(userPath, uids, gids))
		if hostNet {
			opts = append(opts, withSysBind)
		}
	}
	return opts, nil
}

// devicesOpt adds the CRI devices (host path symlinks resolved, a directory
// adds every device in it) with their cgroup rules.
func devicesOpt(cfg *runtimeapi.ContainerConfig, ownershipFromSC bool) oci.SpecOpts {
	devices := cfg.GetDevices()
	sc := cfg.GetLinux().GetSecurityContext()
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *runtimespec.Spec) error {
		ensureResources(s)
		before := len(s.Linux.Devices)
		for _, d := range devices {
			hostPath, err := resolveSymlink(d.GetHostPath())
			if err != nil {
				return invalidArgument("device %q: %v", d.GetHostPath(), err)
			}
			perms := d.GetPermissions()
			if perms == "" {
				perms = "rwm"
			}
			if err := oci.WithDevices(hostPath, d.GetContainerPath(), perms)(ctx, client, c, s); err != nil {
				return invalidArgument("device %q: %v", d.GetHostPath(), err)
			}
		}
		if ownershipFromSC {
			uid, gid := sc.GetRunAsUser(), sc.GetRunAsGroup()
			for i := before; i < len(s.Linux.Devices); i++ {
				if uid != nil && uid.GetValue() != 0 {
					v := uint32(uid.GetValue())
					s.Linux.Devices[i].UID = &v
				}
				if gid != nil && gid.GetValue() != 0 {
					v := uint32(gid.GetValue())
					s.Linux.Devices[i].GID = &v
				}
			}
		}
		return nil
	}
}

func containerAnnotations(p ContainerParams) map[string]string {
	a := map[string]string{}
	passthroughAnnotations(a, p.SandboxConfig.GetAnnotations(), p.PodAnnotationPatterns)
	passthroughAnnotations(a, p.Config.GetAnnotations(), p.ContainerAnnotationPatterns)
	md := p.SandboxConfig.GetMetadata()
	name := p.Config.GetMetadata().GetName()
	if name == "" {
		name = p.Name
	}
	a[AnnotationSandboxID] = p.SandboxID
	a[AnnotationSandboxNamespace] = md.GetNamespace()
	a[AnnotationSandboxUID] = md.GetUid()
	a[AnnotationSandboxName] = md.GetName()
	a[AnnotationContainerName] = name
	a[AnnotationImageName] = p.ImageName
	a[AnnotationContainerType] = ContainerTypeContainer
	maps.Copy(a, p.Annotations)
	return a
}

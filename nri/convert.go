package nri

import (
	"maps"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// Pod converts a sandbox record into what NRI is told about the pod. pid
// is the pause process's (0 when it does not run); spec is the pause
// container's OCI spec, nil when not at hand.
func Pod(md sandbox.Metadata, pid uint32, spec *rspec.Spec) *api.PodSandbox {
	cfg := md.Config
	p := &api.PodSandbox{
		Id:             md.ID,
		Name:           cfg.GetMetadata().GetName(),
		Uid:            cfg.GetMetadata().GetUid(),
		Namespace:      cfg.GetMetadata().GetNamespace(),
		Labels:         cloneMap(cfg.GetLabels()),
		Annotations:    cloneMap(cfg.GetAnnotations()),
		RuntimeHandler: md.RuntimeHandler,
		Pid:            pid,
		Linux: &api.LinuxPodSandbox{
			PodOverhead:  Resources(firstNonNil(md.Overhead, cfg.GetLinux().GetOverhead())),
			PodResources: Resources(firstNonNil(md.Resources, cfg.GetLinux().GetResources())),
			CgroupParent: cfg.GetLinux().GetCgroupParent(),
		},
	}
	if md.IP != "" {
		p.Ips = append([]string{md.IP}, md.AdditionalIPs...)
	}
	if spec != nil {
		maps.Copy(p.Annotations, spec.Annotations)
		if l := spec.Linux; l != nil {
			p.Linux.CgroupsPath = l.CgroupsPath
			p.Linux.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
			p.Linux.Resources = api.FromOCILinuxResources(l.Resources, nil)
		}
	} else if md.NetNSPath != "" {
		p.Linux.Namespaces = []*api.LinuxNamespace{{Type: string(rspec.NetworkNamespace), Path: md.NetNSPath}}
	}
	return p
}

// Container converts a container record into what NRI is told about the
// container. spec is its OCI spec (the one being made, at creation); nil
// leaves out what only the spec knows.
func Container(md container.Metadata, st container.Status, spec *rspec.Spec) *api.Container {
	cfg := md.Config
	c := &api.Container{
		Id:            md.ID,
		PodSandboxId:  md.SandboxID,
		Name:          cfg.GetMetadata().GetName(),
		State:         State(st),
		Labels:        cloneMap(cfg.GetLabels()),
		Annotations:   map[string]string{},
		Pid:           st.Pid,
		CreatedAt:     st.CreatedAt,
		StartedAt:     st.StartedAt,
		FinishedAt:    st.FinishedAt,
		ExitCode:      st.ExitCode,
		StatusReason:  st.Reason,
		StatusMessage: st.Message,
		User:          &api.User{Uid: uint32(md.UID), Gid: uint32(md.GID)},
	}
	for _, g := range md.SupplementalGroups {
		c.User.AdditionalGids = append(c.User.AdditionalGids, uint32(g))
	}
	for _, d := range cfg.GetCDIDevices() {
		c.CDIDevices = append(c.CDIDevices, &api.CDIDevice{Name: d.GetName()})
	}
	if md.ImageRef != "" || md.ImageName != "" {
		c.Image = &api.Image{ConfigDigest: md.ImageRef, Name: md.ImageName}
	}
	if spec == nil {
		maps.Copy(c.Annotations, cfg.GetAnnotations())
		c.Args = append(append([]string(nil), cfg.GetCommand()...), cfg.GetArgs()...)
		for _, kv := range cfg.GetEnvs() {
			c.Env = append(c.Env, kv.GetKey()+"="+string(kv.GetValue()))
		}
		c.Linux = &api.LinuxContainer{Resources: Resources(st.Resources.GetLinux())}
		if c.Linux.Resources == nil {
			c.Linux.Resources = Resources(cfg.GetLinux().GetResources())
		}
		return c
	}
	maps.Copy(c.Annotations, spec.Annotations)
	maps.Copy(c.Annotations, cfg.GetAnnotations())
	if p := spec.Process; p != nil {
		c.Args = append([]string(nil), p.Args...)
		c.Env = append([]string(nil), p.Env...)
		for _, r := range p.Rlimits {
			c.Rlimits = append(c.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
	}
	c.Mounts = api.FromOCIMounts(spec.Mounts)
	c.Hooks = api.FromOCIHooks(spec.Hooks)
	c.Linux = &api.LinuxContainer{}
	if l := spec.Linux; l != nil {
		c.Linux.Namespaces = api.FromOCILinuxNamespaces(l.Namespaces)
		c.Linux.Devices = api.FromOCILinuxDevices(l.Devices)
		c.Linux.Resources = api.FromOCILinuxResources(l.Resources, nil)
		c.Linux.CgroupsPath = l.CgroupsPath
		c.Linux.Sysctl = cloneMap(l.Sysctl)
		if l.Seccomp != nil {
			c.Linux.SeccompPolicy = api.FromOCILinuxSeccomp(l.Seccomp)
		}
		c.Linux.NetDevices = api.FromOCILinuxNetDevices(l.NetDevices)
	}
	if p := spec.Process; p != nil {
		if p.OOMScoreAdj != nil {
			c.Linux.OomScoreAdj = api.Int(*p.OOMScoreAdj)
		}
		c.Linux.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		c.Linux.Scheduler = api.FromOCILinuxScheduler(p.Scheduler)
	}
	// The resources set since creation (UpdateContainerResources) are
	// newer than the spec's.
	if r := Resources(st.Resources.GetLinux()); r != nil {
		c.Linux.Resources = r
	}
	return c
}

// State maps a container status to NRI's container state.
func State(st container.Status) api.ContainerState {
	switch st.State() {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return api.ContainerState_CONTAINER_CREATED
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return api.ContainerState_CONTAINER_RUNNING
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// Resources converts CRI container resources to NRI's (nil for nil).
func Resources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Memory: &api.LinuxMemory{},
		Cpu: &api.LinuxCPU{
			Cpus: r.GetCpusetCpus(),
			Mems: r.GetCpusetMems(),
		},
		Unified: cloneMap(r.GetUnified()),
	}
	if v := r.GetMemoryLimitInBytes(); v != 0 {
		out.Memory.Limit = api.Int64(v)
	}
	if v := r.GetMemorySwapLimitInBytes(); v != 0 {
		out.Memory.Swap = api.Int64(v)
	}
	if v := r.GetCpuShares(); v != 0 {
		out.Cpu.Shares = api.UInt64(uint64(v))
	}
	if v := r.GetCpuQuota(); v != 0 {
		out.Cpu.Quota = api.Int64(v)
	}
	if v := r.GetCpuPeriod(); v != 0 {
		out.Cpu.Period = api.UInt64(uint64(v))
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// CRIResources converts NRI resources back to CRI container resources,
// over base (the requested ones): what NRI leaves unset keeps base's value.
// It returns a new value; base is not changed.
func CRIResources(r *api.LinuxResources, base *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{}
	if base != nil {
		out = cloneCRIResources(base)
	}
	if r == nil {
		return out
	}
	if m := r.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			out.MemoryLimitInBytes = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			out.MemorySwapLimitInBytes = v.GetValue()
		}
	}
	if c := r.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			out.CpuShares = int64(v.GetValue())
		}
		if v := c.GetQuota(); v != nil {
			out.CpuQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			out.CpuPeriod = int64(v.GetValue())
		}
		if c.GetCpus() != "" {
			out.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			out.CpusetMems = c.GetMems()
		}
	}
	if len(r.GetHugepageLimits()) != 0 {
		out.HugepageLimits = nil
		for _, h := range r.GetHugepageLimits() {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	if len(r.GetUnified()) != 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, r.GetUnified())
	}
	return out
}

func cloneCRIResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	return proto.Clone(r).(*runtimeapi.LinuxContainerResources)
}

func firstNonNil(a, b *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	if a != nil {
		return a
	}
	return b
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	maps.Copy(out, m)
	return out
}

package nri

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/nri/pkg/api"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// CDIInjector injects CDI devices, by their qualified names, into a spec.
type CDIInjector func(spec *rspec.Spec, devices []string) error

// Adjust applies the plugins' adjustment of a container to its OCI spec:
// annotations, environment, args, hooks, devices, CDI devices (with cdi;
// nil refuses them), namespaces, sysctls, resources, cgroups path, OOM
// score, I/O priority, scheduler, seccomp, mounts and rlimits. It is NRI's
// own generator (pkg/runtime-tools/generate) over specEditor.
func Adjust(spec *rspec.Spec, adj *api.ContainerAdjustment, cdi CDIInjector) error {
	if adj == nil {
		return nil
	}
	if spec == nil {
		return fmt.Errorf("NRI adjustment: no spec")
	}
	inject := func(_ *rspec.Spec, devices []string) error {
		if cdi == nil {
			return fmt.Errorf("NRI adjustment asks for CDI devices %v, and CDI is disabled", devices)
		}
		return cdi(spec, devices)
	}
	g := nrigen.SpecGenerator(&specEditor{spec: spec}, nrigen.WithCDIDeviceInjector(inject))
	if err := g.Adjust(adj); err != nil {
		return fmt.Errorf("applying the NRI adjustment: %w", err)
	}
	return nil
}

// specEditor edits an OCI spec in place; it is the part of
// runtime-tools' generator that NRI's generator needs
// (nrigen.UnderlyingGenerator), written over our own spec.
type specEditor struct{ spec *rspec.Spec }

var _ nrigen.UnderlyingGenerator = (*specEditor)(nil)

func (e *specEditor) Spec() *rspec.Spec { return e.spec }

func (e *specEditor) process() *rspec.Process {
	if e.spec.Process == nil {
		e.spec.Process = &rspec.Process{}
	}
	return e.spec.Process
}

func (e *specEditor) linux() *rspec.Linux {
	if e.spec.Linux == nil {
		e.spec.Linux = &rspec.Linux{}
	}
	return e.spec.Linux
}

func (e *specEditor) resources() *rspec.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &rspec.LinuxResources{}
	}
	return l.Resources
}

func (e *specEditor) cpu() *rspec.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &rspec.LinuxCPU{}
	}
	return r.CPU
}

func (e *specEditor) memory() *rspec.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &rspec.LinuxMemory{}
	}
	return r.Memory
}

func (e *specEditor) hooks() *rspec.Hooks {
	if e.spec.Hooks == nil {
		e.spec.Hooks = &rspec.Hooks{}
	}
	return e.spec.Hooks
}

func (e *specEditor) AddAnnotation(key, value string) {
	if e.spec.Annotations == nil {
		e.spec.Annotations = map[string]string{}
	}
	e.spec.Annotations[key] = value
}

func (e *specEditor) RemoveAnnotation(key string) { delete(e.spec.Annotations, key) }

func (e *specEditor) AddDevice(d rspec.LinuxDevice) {
	l := e.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (e *specEditor) RemoveDevice(path string) {
	if e.spec.Linux == nil {
		return
	}
	e.spec.Linux.Devices = slices.DeleteFunc(e.spec.Linux.Devices, func(d rspec.LinuxDevice) bool { return d.Path == path })
}

func namespaceType(ns string) (rspec.LinuxNamespaceType, error) {
	switch ns {
	case "network", "net":
		return rspec.NetworkNamespace, nil
	case "pid":
		return rspec.PIDNamespace, nil
	case "mount", "mnt":
		return rspec.MountNamespace, nil
	case "ipc":
		return rspec.IPCNamespace, nil
	case "uts":
		return rspec.UTSNamespace, nil
	case "user":
		return rspec.UserNamespace, nil
	case "cgroup":
		return rspec.CgroupNamespace, nil
	case "time":
		return rspec.TimeNamespace, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (e *specEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, rspec.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e *specEditor) RemoveLinuxNamespace(ns string) error {
	t, err := namespaceType(ns)
	if err != nil {
		return err
	}
	if e.spec.Linux != nil {
		e.spec.Linux.Namespaces = slices.DeleteFunc(e.spec.Linux.Namespaces, func(n rspec.LinuxNamespace) bool { return n.Type == t })
	}
	return nil
}

func (e *specEditor) AddPreStartHook(h rspec.Hook) {
	e.hooks().Prestart = append(e.hooks().Prestart, h) //nolint:staticcheck // NRI plugins may still ask for prestart hooks
}

func (e *specEditor) AddPostStartHook(h rspec.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}

func (e *specEditor) AddPostStopHook(h rspec.Hook) {
	e.hooks().Poststop = append(e.hooks().Poststop, h)
}

func (e *specEditor) AddProcessEnv(name, value string) {
	p := e.process()
	kv := name + "=" + value
	for i, env := range p.Env {
		if k, _, _ := strings.Cut(env, "="); k == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (e *specEditor) ClearProcessEnv() {
	if e.spec.Process != nil {
		e.spec.Process.Env = nil
	}
}

func (e *specEditor) SetProcessArgs(args []string) { e.process().Args = args }

func (e *specEditor) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e *specEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, rspec.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (e *specEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, rspec.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e *specEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e *specEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e *specEditor) RemoveLinuxSysctl(key string) {
	if e.spec.Linux != nil {
		delete(e.spec.Linux.Sysctl, key)
	}
}

func (e *specEditor) AddMount(m rspec.Mount) { e.spec.Mounts = append(e.spec.Mounts, m) }

func (e *specEditor) ClearMounts() { e.spec.Mounts = nil }

func (e *specEditor) Mounts() []rspec.Mount { return e.spec.Mounts }

func (e *specEditor) RemoveMount(dest string) {
	e.spec.Mounts = slices.DeleteFunc(e.spec.Mounts, func(m rspec.Mount) bool { return m.Destination == dest })
}

func (e *specEditor) SetLinuxCgroupsPath(path string) { e.linux().CgroupsPath = path }

func (e *specEditor) SetLinuxResourcesCPUCpus(cpus string) { e.cpu().Cpus = cpus }

func (e *specEditor) SetLinuxResourcesCPUMems(mems string) { e.cpu().Mems = mems }

func (e *specEditor) SetLinuxResourcesCPUPeriod(period uint64) { e.cpu().Period = &period }

func (e *specEditor) SetLinuxResourcesCPUQuota(quota int64) { e.cpu().Quota = &quota }

func (e *specEditor) SetLinuxResourcesCPURealtimePeriod(period uint64) {
	e.cpu().RealtimePeriod = &period
}

func (e *specEditor) SetLinuxResourcesCPURealtimeRuntime(t int64) { e.cpu().RealtimeRuntime = &t }

func (e *specEditor) SetLinuxResourcesCPUShares(shares uint64) { e.cpu().Shares = &shares }

func (e *specEditor) SetLinuxResourcesMemoryLimit(limit int64) { e.memory().Limit = &limit }

func (e *specEditor) SetLinuxResourcesMemorySwap(swap int64) { e.memory().Swap = &swap }

func (e *specEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
	default:
		return fmt.Errorf("rootfs propagation %q is not valid", rp)
	}
	e.linux().RootfsPropagation = rp
	return nil
}

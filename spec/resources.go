package spec

import (
	"context"
	"maps"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// withResources applies CRI LinuxContainerResources as containerd does:
// zero values are left unset; a memory limit without a swap limit sets swap
// equal to it (no swapping) when the swap controller exists; hugepage limits
// are skipped with a warning when the hugetlb controller is missing; the
// unified map is copied as is. oom_score_adj is handled separately.
func (g *Generator) withResources(r *runtimeapi.LinuxContainerResources) oci.SpecOpts {
	swap := g.host.swapAvailable()
	hugetlb := g.host.hugetlbAvailable()
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if r == nil {
			return nil
		}
		ensureResources(s)
		res := s.Linux.Resources
		if res.CPU == nil {
			res.CPU = &runtimespec.LinuxCPU{}
		}
		if res.Memory == nil {
			res.Memory = &runtimespec.LinuxMemory{}
		}
		if p := uint64(r.GetCpuPeriod()); p != 0 {
			res.CPU.Period = &p
		}
		if q := r.GetCpuQuota(); q != 0 {
			res.CPU.Quota = &q
		}
		if sh := uint64(r.GetCpuShares()); sh != 0 {
			res.CPU.Shares = &sh
		}
		if cpus := r.GetCpusetCpus(); cpus != "" {
			res.CPU.Cpus = cpus
		}
		if mems := r.GetCpusetMems(); mems != "" {
			res.CPU.Mems = mems
		}
		limit, swapLimit := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
		if limit != 0 {
			res.Memory.Limit = &limit
			if swapLimit == 0 && swap {
				l := limit
				res.Memory.Swap = &l
			}
		}
		if swapLimit != 0 && swap {
			res.Memory.Swap = &swapLimit
		}
		if len(r.GetHugepageLimits()) > 0 {
			if hugetlb {
				for _, h := range r.GetHugepageLimits() {
					res.HugepageLimits = append(res.HugepageLimits, runtimespec.LinuxHugepageLimit{
						Pagesize: h.GetPageSize(),
						Limit:    h.GetLimit(),
					})
				}
			} else {
				klog.InfoS("The hugetlb cgroup controller is absent, skipping hugepage limits")
			}
		}
		if u := r.GetUnified(); u != nil {
			if res.Unified == nil {
				res.Unified = map[string]string{}
			}
			maps.Copy(res.Unified, u)
		}
		return nil
	}
}

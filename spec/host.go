package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/seccomp"
	"github.com/moby/sys/mountinfo"
	"k8s.io/klog/v2"
	"tags.cncf.io/container-device-interface/pkg/cdi"
)

// Generator builds OCI spec options from CRI configs. It holds the host
// probes the options depend on; build one with NewGenerator and share it.
type Generator struct {
	host hostDeps
	// cdi resolves CDI devices (nil: CDI disabled); see cdi.go.
	cdi *cdi.Cache
	// hostCgroupOpts caches the options kept from the host's /sys/fs/cgroup
	// mount (cgroupMountOptions): reading the mount table costs a parse of
	// every mount of the host (~1 ms, more with many pods) per create.
	hostCgroupOpts struct {
		once sync.Once
		opts []string
	}
}

// NewGenerator returns a Generator that probes the real host. The daemon's
// oom_score_adj and the swap and hugetlb controllers are probed once per
// Generator, on first use.
func NewGenerator(opts ...GeneratorOpt) *Generator {
	g := &Generator{host: defaultHost()}
	for _, o := range opts {
		o(g)
	}
	return g
}

// hostDeps is everything this package asks the host. Tests use fakes.
type hostDeps struct {
	// oomScoreAdj is the daemon's own /proc/self/oom_score_adj.
	oomScoreAdj func() (int, error)
	hostname    func() (string, error)
	// cgroupUnified: the host runs cgroup v2 only (not hybrid).
	cgroupUnified func() bool
	// swapAvailable: the memory swap controller can be configured.
	swapAvailable func() bool
	// hugetlbAvailable: the hugetlb controller is present.
	hugetlbAvailable func() bool
	seccompEnabled   func() bool
	apparmorEnabled  func() bool
	// apparmorProfileExists tells whether a profile is loaded in the kernel.
	apparmorProfileExists func(name string) (bool, error)
	// lookupMount finds the mount that holds path.
	lookupMount     func(path string) (*mountinfo.Info, error)
	runningInUserNS func() bool
	// currentCaps is the capability set "ALL" expands to.
	currentCaps func() ([]string, error)
}

func defaultHost() hostDeps {
	return hostDeps{
		oomScoreAdj:           sync.OnceValues(readOOMScoreAdj),
		hostname:              os.Hostname,
		cgroupUnified:         func() bool { return cgroups.Mode() == cgroups.Unified },
		swapAvailable:         sync.OnceValue(swapControllerAvailable),
		hugetlbAvailable:      sync.OnceValue(hugetlbControllerAvailable),
		seccompEnabled:        seccomp.IsEnabled,
		apparmorEnabled:       apparmor.HostSupports,
		apparmorProfileExists: apparmorProfileLoaded,
		lookupMount:           lookupMount,
		runningInUserNS:       cgroups.RunningInUserNS,
		currentCaps:           cap.Current,
	}
}

func readOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("reading the daemon's oom_score_adj: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parsing the daemon's oom_score_adj: %w", err)
	}
	return v, nil
}

// clampOOMScoreAdj raises adj to the daemon's own oom_score_adj when restrict
// is set: a process without CAP_SYS_RESOURCE cannot lower it.
func (g *Generator) clampOOMScoreAdj(adj int, restrict bool) (int, error) {
	if !restrict {
		return adj, nil
	}
	cur, err := g.host.oomScoreAdj()
	if err != nil {
		return adj, err
	}
	if adj < cur {
		return cur, nil
	}
	return adj, nil
}

func swapControllerAvailable() bool {
	p := "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
	if cgroups.Mode() == cgroups.Unified {
		_, unified, err := cgroups.ParseCgroupFileUnified("/proc/self/cgroup")
		if err != nil {
			klog.ErrorS(err, "Cannot detect the swap controller, assuming it is absent")
			return false
		}
		p = filepath.Join("/sys/fs/cgroup", unified, "memory.swap.max")
	}
	_, err := os.Stat(p)
	return err == nil
}

func hugetlbControllerAvailable() bool {
	if cgroups.Mode() == cgroups.Unified {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && strings.Contains(string(b), "hugetlb")
	}
	_, err := os.ReadDir("/sys/fs/cgroup/hugetlb")
	return err == nil
}

func apparmorProfileLoaded(name string) (bool, error) {
	if name == "" {
		return false, errors.New("empty apparmor profile name")
	}
	b, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, name+" (") {
			return true, nil
		}
	}
	return false, nil
}

// lookupMount returns the mount holding path: the longest mount point that is
// a parent of it (the topmost one when mounts are stacked).
func lookupMount(path string) (*mountinfo.Info, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(resolved))
	if err != nil {
		return nil, fmt.Errorf("reading mount info for %q: %w", resolved, err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) >= len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount found for %q", resolved)
	}
	return best, nil
}

package stats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/errdefs"
)

// The pod cgroup is read from cgroupfs directly (containerd only reports task
// cgroups). Only the files the CRI stats and the pod-level metrics need are
// read, into the same cg1/cg2 types containerd reports for tasks, so that
// one decoding path serves both. (The cgroups library's cgroup1/cgroup2
// managers would do it too, but they pull in ebpf and dbus modules.)

// cgroupReader reads a cgroup below root. The fields exist so tests can point
// it at a fake tree.
type cgroupReader struct {
	mode cgroups.CGMode
	// root is the cgroup mountpoint: the cgroup2 mount (unified) or the
	// directory holding one directory per v1 controller (legacy, hybrid).
	root string
	now  func() time.Time
}

// ReadCgroup reads the cgroup of a pod: parent is the sandbox's
// LinuxPodSandboxConfig.CgroupParent, either a cgroupfs path
// ("/kubepods/burstable/pod<uid>") or a systemd slice name
// ("kubepods-burstable-pod<uid>.slice"). The daemon must see the host's
// cgroup tree (host cgroup namespace, /sys/fs/cgroup). A cgroup that does
// not exist is errdefs.ErrNotFound.
func ReadCgroup(parent string) (*Sample, error) {
	r := cgroupReader{mode: cgroups.Mode(), root: "/sys/fs/cgroup", now: time.Now}
	return r.read(parent)
}

func (r cgroupReader) read(parent string) (*Sample, error) {
	group, err := CgroupPath(parent)
	if err != nil {
		return nil, err
	}
	switch r.mode {
	case cgroups.Unified:
		return r.readV2(group)
	case cgroups.Legacy, cgroups.Hybrid:
		return r.readV1(group)
	}
	return nil, fmt.Errorf("no cgroup filesystem: %w", errdefs.ErrNotImplemented)
}

func (r cgroupReader) readV2(group string) (*Sample, error) {
	dir := filepath.Join(r.root, group)
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	f := cgroupFiles{dir: dir}
	m := &cg2.Metrics{}
	cpu := f.kv("cpu.stat")
	m.CPU = &cg2.CPUStat{
		UsageUsec: cpu["usage_usec"], UserUsec: cpu["user_usec"], SystemUsec: cpu["system_usec"],
		NrPeriods: cpu["nr_periods"], NrThrottled: cpu["nr_throttled"], ThrottledUsec: cpu["throttled_usec"],
		PSI: f.psi("cpu.pressure"),
	}
	mem := f.kv("memory.stat")
	m.Memory = &cg2.MemoryStat{
		Anon: mem["anon"], File: mem["file"], KernelStack: mem["kernel_stack"], Slab: mem["slab"],
		Sock: mem["sock"], Shmem: mem["shmem"], FileMapped: mem["file_mapped"],
		InactiveAnon: mem["inactive_anon"], ActiveAnon: mem["active_anon"],
		InactiveFile: mem["inactive_file"], ActiveFile: mem["active_file"], Unevictable: mem["unevictable"],
		Pgfault: mem["pgfault"], Pgmajfault: mem["pgmajfault"],
		Usage: f.uint("memory.current"), UsageLimit: f.uint("memory.max"), MaxUsage: f.uint("memory.peak"),
		SwapUsage: f.uint("memory.swap.current"), SwapLimit: f.uint("memory.swap.max"),
		PSI: f.psi("memory.pressure"),
	}
	ev := f.kv("memory.events")
	m.MemoryEvents = &cg2.MemoryEvents{Low: ev["low"], High: ev["high"], Max: ev["max"], Oom: ev["oom"], OomKill: ev["oom_kill"]}
	if f.exists("pids.current") {
		m.Pids = &cg2.PidsStat{Current: f.uint("pids.current"), Limit: f.uint("pids.max")}
	}
	m.Io = &cg2.IOStat{Usage: f.ioStat("io.stat"), PSI: f.psi("io.pressure")}
	if f.err != nil {
		return nil, f.err
	}
	return &Sample{ID: group, Timestamp: r.now(), V2: m}, nil
}

// userHZ is the unit of cpuacct.stat (USER_HZ, 100 on every Linux ABI).
const userHZ = 100

func (r cgroupReader) readV1(group string) (*Sample, error) {
	ctl := func(name string) cgroupFiles { return cgroupFiles{dir: filepath.Join(r.root, name, group)} }
	cpuacct, cpu, mem, pids := ctl("cpuacct"), ctl("cpu"), ctl("memory"), ctl("pids")
	m := &cg1.Metrics{}
	found := false
	if checkDir(cpuacct.dir) == nil {
		found = true
		st := cpuacct.kv("cpuacct.stat")
		m.CPU = &cg1.CPUStat{Usage: &cg1.CPUUsage{
			Total:  cpuacct.uint("cpuacct.usage"),
			User:   st["user"] * uint64(time.Second) / userHZ,
			Kernel: st["system"] * uint64(time.Second) / userHZ,
		}}
	}
	if checkDir(cpu.dir) == nil {
		found = true
		st := cpu.kv("cpu.stat")
		if m.CPU == nil {
			m.CPU = &cg1.CPUStat{}
		}
		m.CPU.Throttling = &cg1.Throttle{Periods: st["nr_periods"], ThrottledPeriods: st["nr_throttled"], ThrottledTime: st["throttled_time"]}
	}
	if checkDir(mem.dir) == nil {
		found = true
		st := mem.kv("memory.stat")
		entry := func(prefix string) *cg1.MemoryEntry {
			return &cg1.MemoryEntry{
				Usage: mem.uint(prefix + "usage_in_bytes"), Limit: mem.uint(prefix + "limit_in_bytes"),
				Max: mem.uint(prefix + "max_usage_in_bytes"), Failcnt: mem.uint(prefix + "failcnt"),
			}
		}
		m.Memory = &cg1.MemoryStat{
			Cache: st["cache"], RSS: st["rss"], RSSHuge: st["rss_huge"], MappedFile: st["mapped_file"],
			PgFault: st["pgfault"], PgMajFault: st["pgmajfault"],
			InactiveAnon: st["inactive_anon"], ActiveAnon: st["active_anon"],
			InactiveFile: st["inactive_file"], ActiveFile: st["active_file"], Unevictable: st["unevictable"],
			HierarchicalMemoryLimit: st["hierarchical_memory_limit"], HierarchicalSwapLimit: st["hierarchical_memsw_limit"],
			TotalCache: st["total_cache"], TotalRSS: st["total_rss"], TotalRSSHuge: st["total_rss_huge"],
			TotalMappedFile: st["total_mapped_file"], TotalPgFault: st["total_pgfault"], TotalPgMajFault: st["total_pgmajfault"],
			TotalInactiveAnon: st["total_inactive_anon"], TotalActiveAnon: st["total_active_anon"],
			TotalInactiveFile: st["total_inactive_file"], TotalActiveFile: st["total_active_file"],
			TotalUnevictable: st["total_unevictable"],
			Usage:            entry("memory."),
		}
		// memsw and kmem files exist only with swap accounting / kmem accounting.
		if mem.exists("memory.memsw.usage_in_bytes") {
			m.Memory.Swap = entry("memory.memsw.")
		}
		if mem.exists("memory.kmem.usage_in_bytes") {
			m.Memory.Kernel = entry("memory.kmem.")
		}
		oom := mem.kv("memory.oom_control")
		m.MemoryOomControl = &cg1.MemoryOomControl{OomKillDisable: oom["oom_kill_disable"], UnderOom: oom["under_oom"], OomKill: oom["oom_kill"]}
	}
	if checkDir(pids.dir) == nil {
		found = true
		m.Pids = &cg1.PidsStat{Current: pids.uint("pids.current"), Limit: pids.uint("pids.max")}
	}
	if !found {
		return nil, fmt.Errorf("cgroup %s: %w", group, errdefs.ErrNotFound)
	}
	if err := errors.Join(cpuacct.err, cpu.err, mem.err, pids.err); err != nil {
		return nil, err
	}
	return &Sample{ID: group, Timestamp: r.now(), V1: m}, nil
}

func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("cgroup %s: %w", dir, errdefs.ErrNotFound)
	case err != nil:
		return fmt.Errorf("cgroup %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("cgroup %s is not a directory: %w", dir, errdefs.ErrNotFound)
	}
	return nil
}

// cgroupFiles reads the files of one cgroup directory. A missing file reads
// as zero (controllers and kernel versions differ in what they provide); the
// first other error is kept in err.
type cgroupFiles struct {
	dir string
	err error
}

func (f *cgroupFiles) exists(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name))
	return err == nil
}

func (f *cgroupFiles) read(name string) []byte {
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) && f.err == nil {
			f.err = err
		}
		return nil
	}
	return b
}

func (f *cgroupFiles) setErr(name string, err error) {
	if f.err == nil {
		f.err = fmt.Errorf("parsing %s: %w", filepath.Join(f.dir, name), err)
	}
}

// uint reads a single-value file; "max" is math.MaxUint64.
func (f *cgroupFiles) uint(name string) uint64 {
	b := f.read(name)
	if b == nil {
		return 0
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return math.MaxUint64
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		f.setErr(name, err)
	}
	return v
}

// kv reads a flat-keyed file ("key value" per line). Values that are not
// unsigned integers are skipped.
func (f *cgroupFiles) kv(name string) map[string]uint64 {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(f.read(name)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}

// psi reads a pressure file: "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and "full ...".
func (f *cgroupFiles) psi(name string) *cg2.PSIStats {
	b := f.read(name)
	if b == nil {
		return nil
	}
	out := &cg2.PSIStats{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		d := &cg2.PSIData{}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				d.Total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				f.setErr(name, err)
			}
		}
		switch fields[0] {
		case "some":
			out.Some = d
		case "full":
			out.Full = d
		}
	}
	return out
}

// ioStat reads io.stat: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...".
func (f *cgroupFiles) ioStat(name string) []*cg2.IOEntry {
	var out []*cg2.IOEntry
	sc := bufio.NewScanner(bytes.NewReader(f.read(name)))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		maj, mnr, ok := strings.Cut(fields[0], ":")
		if !ok {
			continue
		}
		e := &cg2.IOEntry{}
		var err1, err2 error
		e.Major, err1 = strconv.ParseUint(maj, 10, 64)
		e.Minor, err2 = strconv.ParseUint(mnr, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				e.Rbytes = n
			case "wbytes":
				e.Wbytes = n
			case "rios":
				e.Rios = n
			case "wios":
				e.Wios = n
			}
		}
		out = append(out, e)
	}
	return out
}

// CgroupPath turns a CRI cgroup parent into a cgroup path below the
// cgroup root: systemd slice names are expanded as systemd lays them out.
func CgroupPath(parent string) (string, error) {
	if parent == "" {
		return "", fmt.Errorf("empty cgroup parent: %w", errdefs.ErrInvalidArgument)
	}
	if !strings.Contains(parent, "/") && strings.HasSuffix(parent, ".slice") {
		return ExpandSlice(parent)
	}
	p := path.Clean("/" + parent)
	if p == "/sys/fs/cgroup" || strings.HasPrefix(p, "/sys/fs/cgroup/") {
		return "", fmt.Errorf("cgroup parent %q must be relative to the cgroup root: %w", parent, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// ExpandSlice expands a systemd slice name into its path:
// "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root.
func ExpandSlice(slice string) (string, error) {
	const suffix = ".slice"
	name, ok := strings.CutSuffix(slice, suffix)
	if !ok || name == "" || strings.Contains(slice, "/") {
		return "", fmt.Errorf("invalid systemd slice %q: %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	var b strings.Builder
	prefix := ""
	for _, part := range strings.Split(name, "-") {
		if part == "" {
			return "", fmt.Errorf("invalid systemd slice %q: %w", slice, errdefs.ErrInvalidArgument)
		}
		b.WriteString("/" + prefix + part + suffix)
		prefix += part + "-"
	}
	return b.String(), nil
}

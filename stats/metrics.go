package stats

import (
	"strconv"
	"time"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Label keys of the cadvisor-style CRI metrics. Every metric carries the base
// labels, in this order; some add more. A pod-level metric has an empty
// container and image, and the sandbox ID as id. kubelet builds Prometheus
// descriptors from ListMetricDescriptors and rejects a metric whose label
// values do not match its descriptor's keys, so the two must agree.
var baseLabelKeys = []string{"pod", "namespace", "container", "id", "image"}

type metricDesc struct {
	name  string
	help  string
	typ   runtimeapi.MetricType
	extra []string
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// The descriptors (immutable). Names, help and extra labels follow cadvisor.
var (
	mCPUUser      = metricDesc{"container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", counter, nil}
	mCPUSystem    = metricDesc{"container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", counter, nil}
	mCPUUsage     = metricDesc{"container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", counter, nil}
	mCfsPeriods   = metricDesc{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil}
	mCfsThrottled = metricDesc{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil}
	mCfsThrottleS = metricDesc{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil}

	mMemCache      = metricDesc{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil}
	mMemRSS        = metricDesc{"container_memory_rss", "Size of RSS in bytes.", gauge, nil}
	mMemKernel     = metricDesc{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil}
	mMemMapped     = metricDesc{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil}
	mMemSwap       = metricDesc{"container_memory_swap", "Container swap usage in bytes.", gauge, nil}
	mMemFailcnt    = metricDesc{"container_memory_failcnt", "Number of memory usage hits limits (cgroup v2: memory.events max).", counter, nil}
	mMemUsage      = metricDesc{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil}
	mMemMaxUsage   = metricDesc{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil}
	mMemWorkingSet = metricDesc{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil}
	mMemActiveFile = metricDesc{"container_memory_total_active_file_bytes", "Current total active file in bytes.", gauge, nil}
	mMemInactFile  = metricDesc{"container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", gauge, nil}
	mMemFailures   = metricDesc{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"}}
	mOOMEvents     = metricDesc{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil}

	mHugetlbUsage = metricDesc{"container_hugetlb_usage_bytes", "Current hugepage usage in bytes.", gauge, []string{"pagesize"}}
	mHugetlbMax   = metricDesc{"container_hugetlb_max_usage_bytes", "Maximum hugepage usage recorded in bytes.", gauge, []string{"pagesize"}}

	mPSICPUFull = metricDesc{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, nil}
	mPSICPUSome = metricDesc{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counter, nil}
	mPSIMemFull = metricDesc{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, nil}
	mPSIMemSome = metricDesc{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counter, nil}
	mPSIIOFull  = metricDesc{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, nil}
	mPSIIOSome  = metricDesc{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counter, nil}

	ifaceKey       = []string{"interface"}
	mNetRxBytes    = metricDesc{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, ifaceKey}
	mNetRxPackets  = metricDesc{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, ifaceKey}
	mNetRxDropped  = metricDesc{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, ifaceKey}
	mNetRxErrors   = metricDesc{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, ifaceKey}
	mNetTxBytes    = metricDesc{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, ifaceKey}
	mNetTxPackets  = metricDesc{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, ifaceKey}
	mNetTxDropped  = metricDesc{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, ifaceKey}
	mNetTxErrors   = metricDesc{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, ifaceKey}
	deviceKey      = []string{"device"}
	mFsInodesFree  = metricDesc{"container_fs_inodes_free", "Number of available inodes.", gauge, deviceKey}
	mFsInodesTotal = metricDesc{"container_fs_inodes_total", "Number of inodes.", gauge, deviceKey}
	mFsLimit       = metricDesc{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, deviceKey}
	mFsUsage       = metricDesc{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, deviceKey}
	mFsReadBytes   = metricDesc{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, deviceKey}
	mFsReads       = metricDesc{"container_fs_reads_total", "Cumulative count of reads completed.", counter, deviceKey}
	mFsWriteBytes  = metricDesc{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, deviceKey}
	mFsWrites      = metricDesc{"container_fs_writes_total", "Cumulative count of writes completed.", counter, deviceKey}
	mBlkioUsage    = metricDesc{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"}}
	mProcesses     = metricDesc{"container_processes", "Number of processes running inside the container.", gauge, nil}
	mFDs           = metricDesc{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil}
	mSockets       = metricDesc{"container_sockets", "Number of open sockets for the container.", gauge, nil}
	mThreads       = metricDesc{"container_threads", "Number of threads running inside the container.", gauge, nil}
	mThreadsMax    = metricDesc{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, nil}
	mLastSeen      = metricDesc{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil}
	mStartTime     = metricDesc{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil}
	mSpecCPUPeriod = metricDesc{"container_spec_cpu_period", "CPU period of the container.", gauge, nil}
	mSpecCPUQuota  = metricDesc{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil}
	mSpecCPUShares = metricDesc{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil}
	mSpecMemLimit  = metricDesc{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, nil}
	mSpecSwapLimit = metricDesc{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, nil}
	allDescriptors = []metricDesc{
		mCPUUser, mCPUSystem, mCPUUsage, mCfsPeriods, mCfsThrottled, mCfsThrottleS,
		mMemCache, mMemRSS, mMemKernel, mMemMapped, mMemSwap, mMemFailcnt, mMemUsage, mMemMaxUsage,
		mMemWorkingSet, mMemActiveFile, mMemInactFile, mMemFailures, mOOMEvents,
		mHugetlbUsage, mHugetlbMax,
		mPSICPUFull, mPSICPUSome, mPSIMemFull, mPSIMemSome, mPSIIOFull, mPSIIOSome,
		mNetRxBytes, mNetRxPackets, mNetRxDropped, mNetRxErrors, mNetTxBytes, mNetTxPackets, mNetTxDropped, mNetTxErrors,
		mFsInodesFree, mFsInodesTotal, mFsLimit, mFsUsage,
		mFsReadBytes, mFsReads, mFsWriteBytes, mFsWrites, mBlkioUsage,
		mProcesses, mFDs, mSockets, mThreads, mThreadsMax,
		mLastSeen, mStartTime,
		mSpecCPUPeriod, mSpecCPUQuota, mSpecCPUShares, mSpecMemLimit, mSpecSwapLimit,
	}
)

// Descriptors lists every metric ListPodSandboxMetrics may return.
func Descriptors() []*runtimeapi.MetricDescriptor {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(allDescriptors))
	for _, d := range allDescriptors {
		keys := append(append(make([]string, 0, len(baseLabelKeys)+len(d.extra)), baseLabelKeys...), d.extra...)
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: keys})
	}
	return out
}

// Labels are the base label values of a metric's owner.
type Labels struct {
	Pod, Namespace, Container, ID, Image string
}

func (l Labels) values() []string {
	return []string{l.Pod, l.Namespace, l.Container, l.ID, l.Image}
}

type builder struct {
	ts   int64
	base []string
	out  []*runtimeapi.Metric
}

func newBuilder(l Labels, at time.Time) *builder {
	return &builder{ts: at.UnixNano(), base: l.values()}
}

func (b *builder) add(d metricDesc, v uint64, extra ...string) {
	if len(extra) != len(d.extra) {
		panic("stats: metric " + d.name + " built with wrong label count") // programming error, caught by tests
	}
	lv := append(append(make([]string, 0, len(b.base)+len(extra)), b.base...), extra...)
	b.out = append(b.out, &runtimeapi.Metric{
		Name: d.name, Timestamp: b.ts, MetricType: d.typ, LabelValues: lv, Value: u64(v),
	})
}

func nsToSeconds(ns uint64) uint64 { return ns / uint64(time.Second) }
func usToSeconds(us uint64) uint64 { return us / uint64(time.Second/time.Microsecond) }

// noLimit maps "unlimited" cgroup values to 0, as cadvisor does.
func noLimit(v uint64) uint64 {
	if unlimited(v) {
		return 0
	}
	return v
}

// FsUsage is a container's writable layer: used space from the snapshotter
// and the capacity of the filesystem holding it (nil when unknown).
type FsUsage struct {
	Device     string
	UsedBytes  uint64
	InodesUsed uint64
	Capacity   *FsCapacity
}

// ContainerInfo is what the metrics of one container need besides its cgroup sample.
type ContainerInfo struct {
	Labels Labels
	// StartedAt is the start time in Unix nanoseconds (0: not started).
	StartedAt int64
	// Resources are the container's current resources (nil: no spec metrics).
	Resources *runtimeapi.LinuxContainerResources
	// Processes is the number of processes (HaveProcesses false: use the pids cgroup).
	Processes     uint64
	HaveProcesses bool
	// FDs and Sockets are counted over the container's processes.
	FDs, Sockets uint64
	HaveFDs      bool
	// Fs is the writable layer (nil: unknown).
	Fs *FsUsage
}

// ContainerMetrics builds the cadvisor-style metrics of one container from
// its cgroup sample (nil for a container without a task: only the metrics
// that do not come from the cgroup are returned).
func ContainerMetrics(info ContainerInfo, s *Sample, now time.Time) []*runtimeapi.Metric {
	at := now
	if s != nil {
		at = s.Timestamp
	}
	b := newBuilder(info.Labels, at)
	b.add(mLastSeen, uint64(now.Unix()))
	if info.StartedAt > 0 {
		b.add(mStartTime, uint64(info.StartedAt/int64(time.Second)))
	}
	b.cgroup(s, info.Processes, info.HaveProcesses)
	if info.HaveFDs {
		b.add(mFDs, info.FDs)
		b.add(mSockets, info.Sockets)
	}
	if fs := info.Fs; fs != nil {
		dev := fs.Device
		if dev == "" {
			dev = "/"
		}
		b.add(mFsUsage, fs.UsedBytes, dev)
		if c := fs.Capacity; c != nil {
			b.add(mFsLimit, c.CapacityBytes, dev)
			b.add(mFsInodesTotal, c.InodesTotal, dev)
			b.add(mFsInodesFree, c.InodesFree, dev)
		}
	}
	if r := info.Resources; r != nil {
		b.add(mSpecCPUPeriod, uint64(max(r.CpuPeriod, 0)))
		b.add(mSpecCPUQuota, uint64(max(r.CpuQuota, 0)))
		b.add(mSpecCPUShares, uint64(max(r.CpuShares, 0)))
		b.add(mSpecMemLimit, uint64(max(r.MemoryLimitInBytes, 0)))
		b.add(mSpecSwapLimit, uint64(max(r.MemorySwapLimitInBytes, 0)))
	}
	return b.out
}

// PodMetrics builds the pod-level metrics: the pod cgroup's CPU, memory and
// process metrics (s may be nil) and the counters of the pod's interfaces
// (loopback excluded).
func PodMetrics(l Labels, s *Sample, ifaces []InterfaceStats, now time.Time) []*runtimeapi.Metric {
	b := newBuilder(l, now)
	if s != nil {
		b.ts = s.Timestamp.UnixNano()
		b.cgroup(s, 0, false)
		b.ts = now.UnixNano()
	}
	for _, i := range PodInterfaces(ifaces) {
		b.add(mNetRxBytes, i.RxBytes, i.Name)
		b.add(mNetRxPackets, i.RxPackets, i.Name)
		b.add(mNetRxDropped, i.RxDropped, i.Name)
		b.add(mNetRxErrors, i.RxErrors, i.Name)
		b.add(mNetTxBytes, i.TxBytes, i.Name)
		b.add(mNetTxPackets, i.TxPackets, i.Name)
		b.add(mNetTxDropped, i.TxDropped, i.Name)
		b.add(mNetTxErrors, i.TxErrors, i.Name)
	}
	return b.out
}

// cgroup adds the metrics that come from a cgroup sample.
func (b *builder) cgroup(s *Sample, processes uint64, haveProcesses bool) {
	switch {
	case s == nil:
		return
	case s.V1 != nil:
		b.cgroupV1(s)
	case s.V2 != nil:
		b.cgroupV2(s)
	}
	if swap, _, ok := s.swapBytes(); ok {
		b.add(mMemSwap, swap)
	}
	cur, limit, havePids := s.Pids()
	if havePids {
		if !haveProcesses {
			processes = cur
		}
		b.add(mThreads, cur)
		b.add(mThreadsMax, noLimit(limit))
	}
	if haveProcesses || havePids {
		b.add(mProcesses, processes)
	}
}

func (b *builder) cgroupV1(s *Sample) {
	m := s.V1
	if cpu := m.CPU; cpu != nil {
		if u := cpu.Usage; u != nil {
			b.add(mCPUUsage, nsToSeconds(u.Total))
			b.add(mCPUUser, nsToSeconds(u.User))
			b.add(mCPUSystem, nsToSeconds(u.Kernel))
		}
		if t := cpu.Throttling; t != nil {
			b.add(mCfsPeriods, t.Periods)
			b.add(mCfsThrottled, t.ThrottledPeriods)
			b.add(mCfsThrottleS, nsToSeconds(t.ThrottledTime))
		}
	}
	if mem := m.Memory; mem != nil {
		if u := mem.Usage; u != nil {
			b.add(mMemUsage, u.Usage)
			b.add(mMemMaxUsage, u.Max)
			b.add(mMemFailcnt, u.Failcnt)
			b.add(mMemWorkingSet, WorkingSetV1(mem))
		}
		b.add(mMemRSS, mem.TotalRSS)
		b.add(mMemCache, mem.TotalCache)
		b.add(mMemMapped, mem.TotalMappedFile)
		b.add(mMemActiveFile, mem.TotalActiveFile)
		b.add(mMemInactFile, mem.TotalInactiveFile)
		if k := mem.Kernel; k != nil {
			b.add(mMemKernel, k.Usage)
		}
		b.add(mMemFailures, mem.PgFault, "pgfault", "container")
		b.add(mMemFailures, mem.TotalPgFault, "pgfault", "hierarchy")
		b.add(mMemFailures, mem.PgMajFault, "pgmajfault", "container")
		b.add(mMemFailures, mem.TotalPgMajFault, "pgmajfault", "hierarchy")
	}
	if oom := m.MemoryOomControl; oom != nil {
		b.add(mOOMEvents, oom.OomKill)
	}
	for _, h := range m.Hugetlb {
		b.add(mHugetlbUsage, h.Usage, h.Pagesize)
		b.add(mHugetlbMax, h.Max, h.Pagesize)
	}
	if blk := m.Blkio; blk != nil {
		dev := func(e *cg1.BlkIOEntry) string {
			if e.Device != "" {
				return e.Device
			}
			return BlockDeviceName(e.Major, e.Minor)
		}
		for _, e := range blk.IoServiceBytesRecursive {
			d := dev(e)
			b.add(mBlkioUsage, e.Value, d, strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10), e.Op)
			switch e.Op {
			case "Read":
				b.add(mFsReadBytes, e.Value, d)
			case "Write":
				b.add(mFsWriteBytes, e.Value, d)
			}
		}
		for _, e := range blk.IoServicedRecursive {
			switch e.Op {
			case "Read":
				b.add(mFsReads, e.Value, dev(e))
			case "Write":
				b.add(mFsWrites, e.Value, dev(e))
			}
		}
	}
}

func (b *builder) cgroupV2(s *Sample) {
	m := s.V2
	psi := func(p *cg2.PSIStats, full, some metricDesc) {
		if f := p.GetFull(); f != nil {
			b.add(full, usToSeconds(f.Total))
		}
		if sm := p.GetSome(); sm != nil {
			b.add(some, usToSeconds(sm.Total))
		}
	}
	if cpu := m.CPU; cpu != nil {
		b.add(mCPUUsage, usToSeconds(cpu.UsageUsec))
		b.add(mCPUUser, usToSeconds(cpu.UserUsec))
		b.add(mCPUSystem, usToSeconds(cpu.SystemUsec))
		b.add(mCfsPeriods, cpu.NrPeriods)
		b.add(mCfsThrottled, cpu.NrThrottled)
		b.add(mCfsThrottleS, usToSeconds(cpu.ThrottledUsec))
		psi(cpu.PSI, mPSICPUFull, mPSICPUSome)
	}
	if mem := m.Memory; mem != nil {
		b.add(mMemUsage, mem.Usage)
		b.add(mMemMaxUsage, mem.MaxUsage)
		b.add(mMemWorkingSet, WorkingSetV2(mem))
		b.add(mMemRSS, mem.Anon)
		b.add(mMemCache, mem.File)
		b.add(mMemMapped, mem.FileMapped)
		b.add(mMemActiveFile, mem.ActiveFile)
		b.add(mMemInactFile, mem.InactiveFile)
		b.add(mMemKernel, mem.KernelStack+mem.Slab)
		// cgroup v2 has no per-cgroup (non-hierarchical) fault counters.
		b.add(mMemFailures, mem.Pgfault, "pgfault", "container")
		b.add(mMemFailures, mem.Pgfault, "pgfault", "hierarchy")
		b.add(mMemFailures, mem.Pgmajfault, "pgmajfault", "container")
		b.add(mMemFailures, mem.Pgmajfault, "pgmajfault", "hierarchy")
		psi(mem.PSI, mPSIMemFull, mPSIMemSome)
	}
	if ev := m.MemoryEvents; ev != nil {
		b.add(mMemFailcnt, ev.Max)
		b.add(mOOMEvents, ev.OomKill)
	}
	for _, h := range m.Hugetlb {
		b.add(mHugetlbUsage, h.Current, h.Pagesize)
		b.add(mHugetlbMax, h.Max, h.Pagesize)
	}
	if io := m.Io; io != nil {
		for _, e := range io.Usage {
			d := BlockDeviceName(e.Major, e.Minor)
			maj, mnr := strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10)
			b.add(mBlkioUsage, e.Rbytes, d, maj, mnr, "Read")
			b.add(mBlkioUsage, e.Wbytes, d, maj, mnr, "Write")
			b.add(mFsReadBytes, e.Rbytes, d)
			b.add(mFsWriteBytes, e.Wbytes, d)
			b.add(mFsReads, e.Rios, d)
			b.add(mFsWrites, e.Wios, d)
		}
		psi(io.PSI, mPSIIOFull, mPSIIOSome)
	}
}

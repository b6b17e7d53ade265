// Package stats turns containerd task metrics and cgroup, netns and procfs
// readings into CRI stats (ContainerStats, PodSandboxStats) and cadvisor-style
// CRI metrics (ListMetricDescriptors, ListPodSandboxMetrics).
//
// It has no CRI server logic: the server package picks the containers and
// sandboxes, fetches their task metrics from containerd in one batched call
// and uses this package to decode and convert them. The only state is the
// Collector, which keeps the previous CPU sample per container and pod to
// compute UsageNanoCores.
package stats

import (
	"fmt"
	"time"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Sample is one cgroup reading: the task metrics of a container (from
// containerd) or a pod cgroup read directly. Exactly one of V1 and V2 is set.
// A nil *Sample stands for "no reading" (e.g. a stopped container): every
// method then returns nil / false.
type Sample struct {
	ID        string
	Timestamp time.Time
	V1        *cg1.Metrics
	V2        *cg2.Metrics
}

// Decode decodes a containerd task metric (typeurl io.containerd.cgroups.v1.Metrics
// or io.containerd.cgroups.v2.Metrics). Other payloads (e.g. Windows) are
// errdefs.ErrNotImplemented.
func Decode(m *types.Metric) (*Sample, error) {
	if m == nil || m.Data == nil {
		return nil, fmt.Errorf("empty task metric: %w", errdefs.ErrInvalidArgument)
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, fmt.Errorf("decoding task metric of %s: %w", m.ID, err)
	}
	ts := time.Now()
	if m.Timestamp != nil {
		ts = m.Timestamp.AsTime()
	}
	return NewSample(m.ID, ts, v)
}

// NewSample wraps decoded cgroup metrics (*cg1.Metrics or *cg2.Metrics).
func NewSample(id string, ts time.Time, v any) (*Sample, error) {
	s := &Sample{ID: id, Timestamp: ts}
	switch m := v.(type) {
	case *cg1.Metrics:
		s.V1 = m
	case *cg2.Metrics:
		s.V2 = m
	default:
		return nil, fmt.Errorf("metrics of %s have unsupported type %T: %w", id, v, errdefs.ErrNotImplemented)
	}
	return s, nil
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

// UsageCoreNanoSeconds is the cumulative CPU time of the cgroup.
func (s *Sample) UsageCoreNanoSeconds() (uint64, bool) {
	switch {
	case s == nil:
	case s.V1 != nil && s.V1.CPU != nil && s.V1.CPU.Usage != nil:
		return s.V1.CPU.Usage.Total, true
	case s.V2 != nil && s.V2.CPU != nil:
		return s.V2.CPU.UsageUsec * 1000, true
	}
	return 0, false
}

// CPU is the CRI CPU usage (UsageNanoCores is left to the Collector).
func (s *Sample) CPU() *runtimeapi.CpuUsage {
	total, ok := s.UsageCoreNanoSeconds()
	if !ok {
		return nil
	}
	cpu := &runtimeapi.CpuUsage{Timestamp: s.Timestamp.UnixNano(), UsageCoreNanoSeconds: u64(total)}
	if s.V2 != nil {
		cpu.Psi = psi(s.V2.CPU.GetPSI())
	}
	return cpu
}

// WorkingSetV1 is usage - total_inactive_file (never below zero), as kubelet
// and cadvisor compute it on cgroup v1.
func WorkingSetV1(m *cg1.MemoryStat) uint64 {
	if m == nil || m.Usage == nil {
		return 0
	}
	if m.TotalInactiveFile < m.Usage.Usage {
		return m.Usage.Usage - m.TotalInactiveFile
	}
	return 0
}

// WorkingSetV2 is memory.current - inactive_file (never below zero).
func WorkingSetV2(m *cg2.MemoryStat) uint64 {
	if m == nil {
		return 0
	}
	if m.InactiveFile < m.Usage {
		return m.Usage - m.InactiveFile
	}
	return 0
}

// unlimited reports whether a cgroup limit means "no limit": the kernel
// reports a huge, page-rounded value, and cgroups v2 "max" reads as MaxUint64.
func unlimited(v uint64) bool { return v == 0 || v > 1<<62 }

func available(limit, workingSet uint64) *runtimeapi.UInt64Value {
	if unlimited(limit) {
		return nil
	}
	if workingSet >= limit {
		return u64(0)
	}
	return u64(limit - workingSet)
}

// Memory is the CRI memory usage. RSS is total_rss on v1 and anon on v2, as
// in cadvisor.
func (s *Sample) Memory() *runtimeapi.MemoryUsage {
	ts := func() int64 { return s.Timestamp.UnixNano() }
	switch {
	case s == nil:
	case s.V1 != nil && s.V1.Memory != nil && s.V1.Memory.Usage != nil:
		m := s.V1.Memory
		ws := WorkingSetV1(m)
		return &runtimeapi.MemoryUsage{
			Timestamp:       ts(),
			WorkingSetBytes: u64(ws),
			AvailableBytes:  available(m.Usage.Limit, ws),
			UsageBytes:      u64(m.Usage.Usage),
			RssBytes:        u64(m.TotalRSS),
			PageFaults:      u64(m.TotalPgFault),
			MajorPageFaults: u64(m.TotalPgMajFault),
		}
	case s.V2 != nil && s.V2.Memory != nil:
		m := s.V2.Memory
		ws := WorkingSetV2(m)
		return &runtimeapi.MemoryUsage{
			Timestamp:       ts(),
			WorkingSetBytes: u64(ws),
			AvailableBytes:  available(m.UsageLimit, ws),
			UsageBytes:      u64(m.Usage),
			RssBytes:        u64(m.Anon),
			PageFaults:      u64(m.Pgfault),
			MajorPageFaults: u64(m.Pgmajfault),
			Psi:             psi(m.PSI),
		}
	}
	return nil
}

// swapBytes returns swap usage and limit. On v1 the "swap" entry is
// memory+swap (memsw), so memory is subtracted.
func (s *Sample) swapBytes() (usage, limit uint64, ok bool) {
	switch {
	case s == nil:
	case s.V1 != nil && s.V1.Memory != nil && s.V1.Memory.Swap != nil && s.V1.Memory.Usage != nil:
		sw, mem := s.V1.Memory.Swap, s.V1.Memory.Usage
		if sw.Usage > mem.Usage {
			usage = sw.Usage - mem.Usage
		}
		limit = sw.Limit
		if !unlimited(limit) && !unlimited(mem.Limit) && limit > mem.Limit {
			limit -= mem.Limit
		}
		return usage, limit, true
	case s.V2 != nil && s.V2.Memory != nil:
		return s.V2.Memory.SwapUsage, s.V2.Memory.SwapLimit, true
	}
	return 0, 0, false
}

// Swap is the CRI swap usage.
func (s *Sample) Swap() *runtimeapi.SwapUsage {
	usage, limit, ok := s.swapBytes()
	if !ok {
		return nil
	}
	sw := &runtimeapi.SwapUsage{Timestamp: s.Timestamp.UnixNano(), SwapUsageBytes: u64(usage)}
	if !unlimited(limit) {
		if usage < limit {
			sw.SwapAvailableBytes = u64(limit - usage)
		} else {
			sw.SwapAvailableBytes = u64(0)
		}
	}
	return sw
}

// IO is the CRI IO usage; it only carries PSI, which only cgroup v2 has.
func (s *Sample) IO() *runtimeapi.IoUsage {
	if s == nil || s.V2 == nil || s.V2.Io == nil || s.V2.Io.PSI == nil {
		return nil
	}
	return &runtimeapi.IoUsage{Timestamp: s.Timestamp.UnixNano(), Psi: psi(s.V2.Io.PSI)}
}

// Pids returns the number of tasks (threads) in the cgroup and the pids limit.
func (s *Sample) Pids() (current, limit uint64, ok bool) {
	switch {
	case s == nil:
	case s.V1 != nil && s.V1.Pids != nil:
		return s.V1.Pids.Current, s.V1.Pids.Limit, true
	case s.V2 != nil && s.V2.Pids != nil:
		return s.V2.Pids.Current, s.V2.Pids.Limit, true
	}
	return 0, 0, false
}

// psi converts cgroup v2 pressure (totals in microseconds) to CRI (nanoseconds).
func psi(p *cg2.PSIStats) *runtimeapi.PsiStats {
	if p == nil {
		return nil
	}
	conv := func(d *cg2.PSIData) *runtimeapi.PsiData {
		if d == nil {
			return nil
		}
		return &runtimeapi.PsiData{Total: d.Total * 1000, Avg10: d.Avg10, Avg60: d.Avg60, Avg300: d.Avg300}
	}
	return &runtimeapi.PsiStats{Full: conv(p.Full), Some: conv(p.Some)}
}

// SumCPU adds CPU usages (for a pod without a cgroup of its own). The result
// carries the newest timestamp; nil inputs are skipped; all nil gives nil.
func SumCPU(in ...*runtimeapi.CpuUsage) *runtimeapi.CpuUsage {
	var out *runtimeapi.CpuUsage
	for _, c := range in {
		if c == nil {
			continue
		}
		if out == nil {
			out = &runtimeapi.CpuUsage{UsageCoreNanoSeconds: u64(0)}
		}
		out.Timestamp = max(out.Timestamp, c.Timestamp)
		out.UsageCoreNanoSeconds.Value += c.GetUsageCoreNanoSeconds().GetValue()
	}
	return out
}

// SumMemory adds memory usages. AvailableBytes has no meaning for a sum and is left unset.
func SumMemory(in ...*runtimeapi.MemoryUsage) *runtimeapi.MemoryUsage {
	var out *runtimeapi.MemoryUsage
	for _, m := range in {
		if m == nil {
			continue
		}
		if out == nil {
			out = &runtimeapi.MemoryUsage{
				WorkingSetBytes: u64(0), UsageBytes: u64(0), RssBytes: u64(0),
				PageFaults: u64(0), MajorPageFaults: u64(0),
			}
		}
		out.Timestamp = max(out.Timestamp, m.Timestamp)
		out.WorkingSetBytes.Value += m.GetWorkingSetBytes().GetValue()
		out.UsageBytes.Value += m.GetUsageBytes().GetValue()
		out.RssBytes.Value += m.GetRssBytes().GetValue()
		out.PageFaults.Value += m.GetPageFaults().GetValue()
		out.MajorPageFaults.Value += m.GetMajorPageFaults().GetValue()
	}
	return out
}

package stats

import (
	"errors"
	"testing"
	"time"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var t0 = time.Unix(1700000000, 0)

// metric wraps cgroup metrics the way containerd's Tasks.Metrics returns them.
func metric(t *testing.T, id string, v any) *types.Metric {
	t.Helper()
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	return &types.Metric{ID: id, Timestamp: timestamppb.New(t0), Data: typeurl.MarshalProto(a)}
}

func val(v *runtimeapi.UInt64Value) any {
	if v == nil {
		return nil
	}
	return v.Value
}

func v1Metrics() *cg1.Metrics {
	return &cg1.Metrics{
		CPU: &cg1.CPUStat{Usage: &cg1.CPUUsage{Total: 3_000_000_000, User: 2_000_000_000, Kernel: 1_000_000_000},
			Throttling: &cg1.Throttle{Periods: 10, ThrottledPeriods: 2, ThrottledTime: 5_000_000_000}},
		Memory: &cg1.MemoryStat{
			TotalRSS: 300, TotalCache: 700, TotalInactiveFile: 400, TotalActiveFile: 200,
			TotalPgFault: 11, TotalPgMajFault: 2, PgFault: 5, PgMajFault: 1, TotalMappedFile: 50,
			Usage:  &cg1.MemoryEntry{Usage: 1000, Limit: 4096, Max: 1500, Failcnt: 3},
			Swap:   &cg1.MemoryEntry{Usage: 1100, Limit: 8192},
			Kernel: &cg1.MemoryEntry{Usage: 64},
		},
		MemoryOomControl: &cg1.MemoryOomControl{OomKill: 1},
		Pids:             &cg1.PidsStat{Current: 4, Limit: 100},
		Hugetlb:          []*cg1.HugetlbStat{{Pagesize: "2MB", Usage: 0, Max: 0}},
		Blkio: &cg1.BlkIOStat{
			IoServiceBytesRecursive: []*cg1.BlkIOEntry{{Op: "Read", Device: "/dev/vda", Major: 254, Minor: 0, Value: 4096}, {Op: "Write", Device: "/dev/vda", Major: 254, Value: 8192}},
			IoServicedRecursive:     []*cg1.BlkIOEntry{{Op: "Read", Device: "/dev/vda", Major: 254, Value: 1}, {Op: "Write", Device: "/dev/vda", Major: 254, Value: 2}},
		},
	}
}

func v2Metrics() *cg2.Metrics {
	psi := &cg2.PSIStats{Some: &cg2.PSIData{Avg10: 1.5, Total: 2_000_000}, Full: &cg2.PSIData{Total: 1_000_000}}
	return &cg2.Metrics{
		CPU: &cg2.CPUStat{UsageUsec: 3_000_000, UserUsec: 2_000_000, SystemUsec: 1_000_000, NrPeriods: 10, NrThrottled: 2, ThrottledUsec: 5_000_000, PSI: psi},
		Memory: &cg2.MemoryStat{
			Usage: 1000, UsageLimit: 4096, MaxUsage: 1500, InactiveFile: 400, ActiveFile: 200, Anon: 300, File: 700,
			FileMapped: 50, KernelStack: 16, Slab: 48, Pgfault: 11, Pgmajfault: 2, SwapUsage: 100, SwapLimit: 1 << 63, PSI: psi,
		},
		MemoryEvents: &cg2.MemoryEvents{Max: 3, OomKill: 1},
		Pids:         &cg2.PidsStat{Current: 4, Limit: 1<<64 - 1},
		Io:           &cg2.IOStat{Usage: []*cg2.IOEntry{{Major: 254, Minor: 0, Rbytes: 4096, Wbytes: 8192, Rios: 1, Wios: 2}}, PSI: psi},
		Hugetlb:      []*cg2.HugeTlbStat{{Pagesize: "2MB"}},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    any
		cpu   uint64
		ws    uint64
		usage uint64
		rss   uint64
		pf    uint64
		majpf uint64
		avail any
		swap  uint64
		swapA any
		pids  uint64
		psi   bool
	}{
		{name: "cgroup v1", in: v1Metrics(), cpu: 3e9, ws: 600, usage: 1000, rss: 300, pf: 11, majpf: 2, avail: uint64(4096 - 600), swap: 100, swapA: uint64(8192 - 4096 - 100), pids: 4},
		{name: "cgroup v2", in: v2Metrics(), cpu: 3e9, ws: 600, usage: 1000, rss: 300, pf: 11, majpf: 2, avail: uint64(4096 - 600), swap: 100, swapA: nil, pids: 4, psi: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Decode(metric(t, "c1", tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if s.ID != "c1" || !s.Timestamp.Equal(t0) {
				t.Fatalf("id/timestamp: %q %v", s.ID, s.Timestamp)
			}
			cpu := s.CPU()
			if cpu.GetTimestamp() != t0.UnixNano() || cpu.GetUsageCoreNanoSeconds().GetValue() != tc.cpu || cpu.UsageNanoCores != nil {
				t.Errorf("cpu = %v", cpu)
			}
			if (cpu.GetPsi() != nil) != tc.psi {
				t.Errorf("cpu psi = %v", cpu.GetPsi())
			}
			if tc.psi && (cpu.GetPsi().GetSome().GetTotal() != 2_000_000_000 || cpu.GetPsi().GetSome().GetAvg10() != 1.5 || cpu.GetPsi().GetFull().GetTotal() != 1e9) {
				t.Errorf("psi not converted to ns: %v", cpu.GetPsi())
			}
			mem := s.Memory()
			got := []any{val(mem.WorkingSetBytes), val(mem.UsageBytes), val(mem.RssBytes), val(mem.PageFaults), val(mem.MajorPageFaults), val(mem.AvailableBytes)}
			want := []any{tc.ws, tc.usage, tc.rss, tc.pf, tc.majpf, tc.avail}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("memory field %d = %v, want %v (%v)", i, got[i], want[i], mem)
				}
			}
			sw := s.Swap()
			if val(sw.SwapUsageBytes) != tc.swap || val(sw.SwapAvailableBytes) != tc.swapA {
				t.Errorf("swap = %v", sw)
			}
			if cur, _, ok := s.Pids(); !ok || cur != tc.pids {
				t.Errorf("pids = %d %v", cur, ok)
			}
			if (s.IO() != nil) != tc.psi {
				t.Errorf("io = %v", s.IO())
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := Decode(nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil metric: %v", err)
	}
	// A payload that is not cgroup metrics (e.g. Windows stats).
	if _, err := Decode(metric(t, "w", &wrapperspb.StringValue{Value: "x"})); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("foreign payload: %v", err)
	}
	// Missing timestamp: now.
	m := metric(t, "c", &cg2.Metrics{})
	m.Timestamp = nil
	s, err := Decode(m)
	if err != nil || time.Since(s.Timestamp) > time.Minute {
		t.Errorf("no timestamp: %v %v", s, err)
	}
}

func TestNilSample(t *testing.T) {
	var s *Sample
	if s.CPU() != nil || s.Memory() != nil || s.Swap() != nil || s.IO() != nil {
		t.Error("nil sample must give nil stats")
	}
	if _, _, ok := s.Pids(); ok {
		t.Error("nil sample has no pids")
	}
	// A sample without the controllers gives absent values, not zeros.
	empty := &Sample{Timestamp: t0, V1: &cg1.Metrics{}}
	if empty.CPU() != nil || empty.Memory() != nil {
		t.Error("v1 without cpu/memory must give nil")
	}
}

func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		usage, inactive, out uint64
	}{
		{"normal", 1000, 400, 600},
		{"no inactive file", 1000, 0, 1000},
		{"inactive above usage", 100, 400, 0},
		{"equal", 400, 400, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WorkingSetV1(&cg1.MemoryStat{Usage: &cg1.MemoryEntry{Usage: tc.usage}, TotalInactiveFile: tc.inactive}); got != tc.out {
				t.Errorf("v1 = %d, want %d", got, tc.out)
			}
			if got := WorkingSetV2(&cg2.MemoryStat{Usage: tc.usage, InactiveFile: tc.inactive}); got != tc.out {
				t.Errorf("v2 = %d, want %d", got, tc.out)
			}
		})
	}
	if WorkingSetV1(nil) != 0 || WorkingSetV1(&cg1.MemoryStat{}) != 0 || WorkingSetV2(nil) != 0 {
		t.Error("nil memory must give 0")
	}
	// v1 uses total_inactive_file (hierarchical), not inactive_file.
	if got := WorkingSetV1(&cg1.MemoryStat{Usage: &cg1.MemoryEntry{Usage: 1000}, InactiveFile: 900, TotalInactiveFile: 100}); got != 900 {
		t.Errorf("v1 must use total_inactive_file: %d", got)
	}
}

func TestMemoryUnlimited(t *testing.T) {
	s := &Sample{Timestamp: t0, V2: &cg2.Metrics{Memory: &cg2.MemoryStat{Usage: 10, UsageLimit: 1<<64 - 1}}}
	if s.Memory().AvailableBytes != nil {
		t.Error("unlimited memory has no available bytes")
	}
	s = &Sample{Timestamp: t0, V1: &cg1.Metrics{Memory: &cg1.MemoryStat{Usage: &cg1.MemoryEntry{Usage: 10, Limit: 9223372036854771712}}}}
	if s.Memory().AvailableBytes != nil {
		t.Error("v1 page-rounded max limit is unlimited")
	}
	s = &Sample{Timestamp: t0, V2: &cg2.Metrics{Memory: &cg2.MemoryStat{Usage: 200, UsageLimit: 100}}}
	if got := s.Memory().AvailableBytes.GetValue(); got != 0 {
		t.Errorf("over limit available = %d", got)
	}
}

func TestSum(t *testing.T) {
	a := &runtimeapi.CpuUsage{Timestamp: 5, UsageCoreNanoSeconds: u64(10), UsageNanoCores: u64(99)}
	b := &runtimeapi.CpuUsage{Timestamp: 7, UsageCoreNanoSeconds: u64(5)}
	got := SumCPU(a, nil, b)
	if got.Timestamp != 7 || got.UsageCoreNanoSeconds.Value != 15 || got.UsageNanoCores != nil {
		t.Errorf("SumCPU = %v", got)
	}
	if SumCPU(nil, nil) != nil || SumMemory() != nil {
		t.Error("sum of nothing must be nil")
	}
	m := SumMemory(
		&runtimeapi.MemoryUsage{Timestamp: 1, WorkingSetBytes: u64(1), UsageBytes: u64(2), RssBytes: u64(3), PageFaults: u64(4), MajorPageFaults: u64(5), AvailableBytes: u64(9)},
		&runtimeapi.MemoryUsage{Timestamp: 2, WorkingSetBytes: u64(10), UsageBytes: u64(20)},
	)
	if m.Timestamp != 2 || m.WorkingSetBytes.Value != 11 || m.UsageBytes.Value != 22 || m.RssBytes.Value != 3 ||
		m.PageFaults.Value != 4 || m.MajorPageFaults.Value != 5 || m.AvailableBytes != nil {
		t.Errorf("SumMemory = %v", m)
	}
}

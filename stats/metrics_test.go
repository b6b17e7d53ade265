package stats

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// requiredByCritest are the metric names critest v1.37's "listing pod
// sandbox metrics" spec needs values for (expectedMetricDescriptorNames minus
// its unimplemented and environment-optional lists).
var requiredByCritest = []string{
	"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_throttled_seconds_total",
	"container_cpu_system_seconds_total", "container_cpu_usage_seconds_total", "container_cpu_user_seconds_total",
	"container_file_descriptors", "container_fs_inodes_free", "container_fs_inodes_total", "container_fs_limit_bytes",
	"container_fs_usage_bytes", "container_last_seen", "container_memory_cache", "container_memory_failcnt",
	"container_memory_failures_total", "container_memory_kernel_usage", "container_memory_mapped_file",
	"container_memory_max_usage_bytes", "container_memory_rss", "container_memory_swap", "container_memory_usage_bytes",
	"container_memory_working_set_bytes", "container_network_receive_bytes_total", "container_network_receive_errors_total",
	"container_network_receive_packets_dropped_total", "container_network_receive_packets_total",
	"container_network_transmit_bytes_total", "container_network_transmit_errors_total",
	"container_network_transmit_packets_dropped_total", "container_network_transmit_packets_total",
	"container_oom_events_total", "container_processes", "container_sockets", "container_spec_cpu_period",
	"container_spec_cpu_shares", "container_spec_memory_limit_bytes", "container_spec_memory_swap_limit_bytes",
	"container_start_time_seconds", "container_threads", "container_threads_max",
}

func TestDescriptors(t *testing.T) {
	descs := Descriptors()
	seen := map[string]bool{}
	for _, d := range descs {
		if seen[d.Name] {
			t.Errorf("duplicate descriptor %s", d.Name)
		}
		seen[d.Name] = true
		if d.Help == "" || len(d.LabelKeys) < len(baseLabelKeys) || !slices.Equal(d.LabelKeys[:5], baseLabelKeys) {
			t.Errorf("descriptor %s: help %q keys %v", d.Name, d.Help, d.LabelKeys)
		}
	}
	for _, name := range requiredByCritest {
		if !seen[name] {
			t.Errorf("descriptor %s missing", name)
		}
	}
	// Callers own what they get.
	descs[0].LabelKeys[0] = "mutated"
	if Descriptors()[0].LabelKeys[0] != "pod" {
		t.Error("Descriptors shares its label slices")
	}
}

// checkAgainstDescriptors fails on a metric with an unknown name or with label
// values that do not match its descriptor's keys (kubelet drops those).
func checkAgainstDescriptors(t *testing.T, ms []*runtimeapi.Metric) map[string][]*runtimeapi.Metric {
	t.Helper()
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range Descriptors() {
		descs[d.Name] = d
	}
	byName := map[string][]*runtimeapi.Metric{}
	for _, m := range ms {
		d, ok := descs[m.Name]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.Name)
			continue
		}
		if len(m.LabelValues) != len(d.LabelKeys) {
			t.Errorf("metric %s: %d label values for keys %v", m.Name, len(m.LabelValues), d.LabelKeys)
		}
		if m.Value == nil || m.Timestamp == 0 {
			t.Errorf("metric %s: value %v timestamp %d", m.Name, m.Value, m.Timestamp)
		}
		byName[m.Name] = append(byName[m.Name], m)
	}
	return byName
}

func value(t *testing.T, byName map[string][]*runtimeapi.Metric, name string, extra ...string) uint64 {
	t.Helper()
	for _, m := range byName[name] {
		if slices.Equal(m.LabelValues[len(baseLabelKeys):], extra) {
			return m.Value.Value
		}
	}
	t.Errorf("no %s%v", name, extra)
	return 0
}

func TestContainerMetrics(t *testing.T) {
	now := t0.Add(time.Minute)
	info := ContainerInfo{
		Labels:        Labels{Pod: "p", Namespace: "ns", Container: "c", ID: "cid", Image: "busybox"},
		StartedAt:     t0.Add(-time.Hour).UnixNano(),
		Resources:     &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 1024, MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 64 << 20},
		Processes:     2,
		HaveProcesses: true,
		FDs:           7, Sockets: 1, HaveFDs: true,
		Fs: &FsUsage{Device: "/var/lib/containerd/overlayfs", UsedBytes: 4096, InodesUsed: 3, Capacity: &FsCapacity{CapacityBytes: 1 << 30, InodesTotal: 1000, InodesFree: 900}},
	}
	for _, tc := range []struct {
		name   string
		sample *Sample
		// extra are names only this cgroup version gives.
		extra []string
	}{
		{name: "cgroup v1", sample: &Sample{ID: "cid", Timestamp: t0, V1: v1Metrics()}},
		{name: "cgroup v2", sample: &Sample{ID: "cid", Timestamp: t0, V2: v2Metrics()},
			extra: []string{"container_pressure_cpu_stalled_seconds_total", "container_pressure_memory_waiting_seconds_total", "container_pressure_io_stalled_seconds_total"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := ContainerMetrics(info, tc.sample, now)
			byName := checkAgainstDescriptors(t, ms)
			pod := PodMetrics(Labels{Pod: "p", Namespace: "ns", ID: "sid"}, nil, []InterfaceStats{{Name: "lo"}, {Name: "eth0", RxBytes: 1}}, now)
			for k, v := range checkAgainstDescriptors(t, pod) {
				byName[k] = append(byName[k], v...)
			}
			for _, name := range append(slices.Clone(requiredByCritest), tc.extra...) {
				if len(byName[name]) == 0 {
					t.Errorf("no %s", name)
				}
			}
			for _, m := range ms {
				if !slices.Equal(m.LabelValues[:5], []string{"p", "ns", "c", "cid", "busybox"}) {
					t.Errorf("%s labels %v", m.Name, m.LabelValues)
				}
			}
			checks := []struct {
				name  string
				extra []string
				want  uint64
			}{
				{"container_cpu_usage_seconds_total", nil, 3},
				{"container_cpu_user_seconds_total", nil, 2},
				{"container_cpu_system_seconds_total", nil, 1},
				{"container_cpu_cfs_throttled_seconds_total", nil, 5},
				{"container_cpu_cfs_throttled_periods_total", nil, 2},
				{"container_memory_working_set_bytes", nil, 600},
				{"container_memory_usage_bytes", nil, 1000},
				{"container_memory_max_usage_bytes", nil, 1500},
				{"container_memory_rss", nil, 300},
				{"container_memory_cache", nil, 700},
				{"container_memory_swap", nil, 100},
				{"container_memory_failcnt", nil, 3},
				{"container_memory_total_inactive_file_bytes", nil, 400},
				{"container_memory_failures_total", []string{"pgmajfault", "hierarchy"}, 2},
				{"container_oom_events_total", nil, 1},
				{"container_processes", nil, 2},
				{"container_threads", nil, 4},
				{"container_file_descriptors", nil, 7},
				{"container_sockets", nil, 1},
				{"container_fs_usage_bytes", []string{"/var/lib/containerd/overlayfs"}, 4096},
				{"container_fs_inodes_free", []string{"/var/lib/containerd/overlayfs"}, 900},
				{"container_fs_reads_bytes_total", []string{"/dev/vda"}, 4096},
				{"container_spec_cpu_quota", nil, 20000},
				{"container_spec_memory_limit_bytes", nil, 64 << 20},
				{"container_start_time_seconds", nil, uint64(t0.Add(-time.Hour).Unix())},
				{"container_last_seen", nil, uint64(now.Unix())},
				{"container_network_receive_bytes_total", []string{"eth0"}, 1},
			}
			for _, c := range checks {
				if tc.name == "cgroup v2" && c.name == "container_fs_reads_bytes_total" {
					continue // v2 names devices from sysfs
				}
				if got := value(t, byName, c.name, c.extra...); got != c.want {
					t.Errorf("%s%v = %d, want %d", c.name, c.extra, got, c.want)
				}
			}
			if tc.name == "cgroup v1" {
				if got := value(t, byName, "container_threads_max"); got != 100 {
					t.Errorf("threads_max = %d", got)
				}
				if got := value(t, byName, "container_blkio_device_usage_total", "/dev/vda", "254", "0", "Write"); got != 8192 {
					t.Errorf("blkio write = %d", got)
				}
			} else {
				if got := value(t, byName, "container_threads_max"); got != 0 {
					t.Errorf("unlimited threads_max = %d, want 0", got)
				}
				if got := value(t, byName, "container_pressure_cpu_waiting_seconds_total"); got != 2 {
					t.Errorf("cpu pressure some = %d", got)
				}
			}
		})
	}
}

func TestContainerMetricsWithoutSample(t *testing.T) {
	now := t0
	ms := ContainerMetrics(ContainerInfo{Labels: Labels{ID: "x"}}, nil, now)
	byName := checkAgainstDescriptors(t, ms)
	if len(ms) != 1 || len(byName["container_last_seen"]) != 1 {
		t.Errorf("metrics = %v", ms)
	}
	// Pids without a process list: processes come from pids.current.
	ms = ContainerMetrics(ContainerInfo{}, &Sample{Timestamp: t0, V2: &cg2.Metrics{Pids: &cg2.PidsStat{Current: 9}}}, now)
	if got := value(t, checkAgainstDescriptors(t, ms), "container_processes"); got != 9 {
		t.Errorf("processes = %d", got)
	}
}

func TestPodMetrics(t *testing.T) {
	ifaces := []InterfaceStats{{Name: "lo", RxBytes: 5}, {Name: "eth0", RxBytes: 1, TxBytes: 2, RxPackets: 3, TxPackets: 4, RxErrors: 5, TxErrors: 6, RxDropped: 7, TxDropped: 8}, {Name: "net1", TxBytes: 9}}
	ms := PodMetrics(Labels{Pod: "p", Namespace: "ns", ID: "sid"}, &Sample{Timestamp: t0, V1: v1Metrics()}, ifaces, t0)
	byName := checkAgainstDescriptors(t, ms)
	if n := len(byName["container_network_receive_bytes_total"]); n != 2 {
		t.Errorf("receive bytes series = %d, want 2 (loopback excluded)", n)
	}
	for i, name := range []string{"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_network_receive_packets_total", "container_network_transmit_packets_total",
		"container_network_receive_errors_total", "container_network_transmit_errors_total",
		"container_network_receive_packets_dropped_total", "container_network_transmit_packets_dropped_total"} {
		if got := value(t, byName, name, "eth0"); got != uint64(i+1) {
			t.Errorf("%s = %d, want %d", name, got, i+1)
		}
	}
	if got := value(t, byName, "container_network_transmit_bytes_total", "net1"); got != 9 {
		t.Errorf("net1 tx = %d", got)
	}
	if got := value(t, byName, "container_memory_working_set_bytes"); got != 600 {
		t.Errorf("pod working set = %d", got)
	}
	for _, m := range ms {
		if m.LabelValues[2] != "" || m.LabelValues[3] != "sid" || m.LabelValues[4] != "" {
			t.Errorf("pod metric %s labels %v", m.Name, m.LabelValues)
		}
	}
	if got := len(PodMetrics(Labels{}, nil, nil, t0)); got != 0 {
		t.Errorf("empty pod: %d metrics", got)
	}
}

func TestCountFDs(t *testing.T) {
	proc := t.TempDir()
	mk := func(pid int, targets ...string) {
		dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, target := range targets {
			if err := os.Symlink(target, filepath.Join(dir, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk(10, "/dev/null", "socket:[123]", "pipe:[5]")
	mk(11, "socket:[124]", "socket:[125]")
	fds, sockets := CountFDs(proc, []uint32{10, 11, 12 /* gone */})
	if fds != 5 || sockets != 3 {
		t.Errorf("fds %d sockets %d", fds, sockets)
	}
	// The real procfs: this process has open descriptors.
	if fds, _ := CountFDs("/proc", []uint32{uint32(os.Getpid())}); fds == 0 {
		t.Error("no fds for self")
	}
}

func TestStatfs(t *testing.T) {
	c, err := Statfs(t.TempDir())
	if err != nil || c.CapacityBytes == 0 {
		t.Errorf("statfs: %+v %v", c, err)
	}
	if _, err := Statfs("/nonexistent/path"); err == nil {
		t.Error("statfs of a missing path must fail")
	}
}

func TestMountSource(t *testing.T) {
	src, err := MountSource(t.TempDir())
	if err != nil || src == "" {
		t.Errorf("MountSource = %q, %v", src, err)
	}
}

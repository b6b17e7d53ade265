package stats

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
)

func TestCgroupPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{in: "/kubepods/burstable/pod123", want: "/kubepods/burstable/pod123"},
		{in: "kubepods/besteffort/pod1", want: "/kubepods/besteffort/pod1"},
		{in: "/kubepods//pod1/", want: "/kubepods/pod1"},
		{in: "kubepods-burstable-pod123.slice", want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice"},
		{in: "kubepods.slice", want: "/kubepods.slice"},
		{in: "-.slice", want: "/"},
		{in: "/test.slice", want: "/test.slice"}, // a path, not a slice name
		{in: "kubepods--pod.slice", err: true},
		{in: "-kubepods.slice", err: true},
		{in: ".slice", err: true},
		{in: "", err: true},
		{in: "/sys/fs/cgroup/memory/x", err: true},
	} {
		got, err := CgroupPath(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("CgroupPath(%q) = %q, %v; want %q (err %v)", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("CgroupPath(%q) error is not InvalidArgument: %v", tc.in, err)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadCgroupV2(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, filepath.Join(root, "kubepods.slice/kubepods-pod1.slice"), map[string]string{
		"cpu.stat":            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 7\nnr_throttled 1\nthrottled_usec 300\n",
		"cpu.pressure":        "some avg10=1.50 avg60=0.00 avg300=0.00 total=1200\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=300\n",
		"memory.stat":         "anon 4096\nfile 8192\ninactive_file 2048\nactive_file 1024\nfile_mapped 512\npgfault 33\npgmajfault 3\n",
		"memory.current":      "16384\n",
		"memory.max":          "max\n",
		"memory.swap.current": "0\n",
		"memory.events":       "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n",
		"pids.current":        "5\n",
		"pids.max":            "max\n",
		"io.stat":             "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
	})
	r := cgroupReader{mode: cgroups.Unified, root: root, now: func() time.Time { return t0 }}
	s, err := r.read("kubepods-pod1.slice")
	if err != nil {
		t.Fatal(err)
	}
	if s.V2 == nil || s.V1 != nil || !s.Timestamp.Equal(t0) {
		t.Fatalf("sample = %+v", s)
	}
	if got := s.CPU().GetUsageCoreNanoSeconds().GetValue(); got != 2_500_000_000 {
		t.Errorf("cpu = %d", got)
	}
	if got := s.CPU().GetPsi().GetSome().GetTotal(); got != 1_200_000 {
		t.Errorf("cpu psi some total = %d", got)
	}
	mem := s.Memory()
	if mem.WorkingSetBytes.Value != 16384-2048 || mem.RssBytes.Value != 4096 || mem.PageFaults.Value != 33 || mem.AvailableBytes != nil {
		t.Errorf("memory = %v", mem)
	}
	if cur, limit, ok := s.Pids(); !ok || cur != 5 || limit != math.MaxUint64 {
		t.Errorf("pids = %d %d %v", cur, limit, ok)
	}
	if s.V2.MemoryEvents.OomKill != 1 || len(s.V2.Io.Usage) != 1 || s.V2.Io.Usage[0].Wbytes != 8192 {
		t.Errorf("events/io = %v %v", s.V2.MemoryEvents, s.V2.Io)
	}
	if s.IO() != nil {
		t.Error("no io.pressure file: no IO usage")
	}

	if _, err := r.read("/kubepods.slice/other"); !errdefs.IsNotFound(err) {
		t.Errorf("missing cgroup: %v", err)
	}
	writeFiles(t, filepath.Join(root, "bad"), map[string]string{"memory.current": "lots\n"})
	if _, err := r.read("/bad"); err == nil {
		t.Error("unparsable file must fail")
	}
	// A cgroup without controllers' files reads as zeros.
	writeFiles(t, filepath.Join(root, "bare"), nil)
	if s, err := r.read("/bare"); err != nil || s.CPU().GetUsageCoreNanoSeconds().GetValue() != 0 {
		t.Errorf("bare cgroup: %v %v", s, err)
	}
}

func TestReadCgroupV1(t *testing.T) {
	root := t.TempDir()
	group := "/kubepods/burstable/pod1"
	writeFiles(t, filepath.Join(root, "cpuacct", group), map[string]string{
		"cpuacct.usage": "3000000000\n",
		"cpuacct.stat":  "user 150\nsystem 50\n",
	})
	writeFiles(t, filepath.Join(root, "cpu", group), map[string]string{"cpu.stat": "nr_periods 9\nnr_throttled 3\nthrottled_time 4000\n"})
	writeFiles(t, filepath.Join(root, "memory", group), map[string]string{
		"memory.stat":               "cache 100\nrss 200\ntotal_cache 700\ntotal_rss 300\ntotal_inactive_file 400\ntotal_pgfault 11\ntotal_pgmajfault 2\n",
		"memory.usage_in_bytes":     "1000\n",
		"memory.limit_in_bytes":     "9223372036854771712\n",
		"memory.max_usage_in_bytes": "1500\n",
		"memory.failcnt":            "0\n",
		"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	})
	writeFiles(t, filepath.Join(root, "pids", group), map[string]string{"pids.current": "3\n", "pids.max": "max\n"})
	r := cgroupReader{mode: cgroups.Hybrid, root: root, now: func() time.Time { return t0 }}
	s, err := r.read(group)
	if err != nil {
		t.Fatal(err)
	}
	if s.V1 == nil || s.V2 != nil {
		t.Fatalf("sample = %+v", s)
	}
	u := s.V1.CPU.Usage
	if u.Total != 3e9 || u.User != 1.5e9 || u.Kernel != 0.5e9 || s.V1.CPU.Throttling.ThrottledPeriods != 3 {
		t.Errorf("cpu = %v", s.V1.CPU)
	}
	mem := s.Memory()
	if mem.WorkingSetBytes.Value != 600 || mem.UsageBytes.Value != 1000 || mem.RssBytes.Value != 300 || mem.AvailableBytes != nil {
		t.Errorf("memory = %v", mem)
	}
	if s.V1.Memory.Swap != nil || s.Swap() != nil {
		t.Error("no memsw files: no swap")
	}
	if s.V1.MemoryOomControl.OomKill != 2 {
		t.Errorf("oom = %v", s.V1.MemoryOomControl)
	}
	if cur, _, ok := s.Pids(); !ok || cur != 3 {
		t.Errorf("pids = %d %v", cur, ok)
	}
	if _, err := r.read("/kubepods/other"); !errdefs.IsNotFound(err) {
		t.Errorf("missing cgroup: %v", err)
	}
}

func TestReadCgroupHost(t *testing.T) {
	// The root cgroup exists on any Linux host with cgroups.
	if cgroups.Mode() == cgroups.Unavailable {
		t.Skip("no cgroup filesystem")
	}
	s, err := ReadCgroup("/")
	if err != nil {
		t.Fatal(err)
	}
	if s.V1 == nil && s.V2 == nil {
		t.Fatal("empty sample")
	}
}

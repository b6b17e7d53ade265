package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
)

func TestProcessGroup(t *testing.T) {
	v1 := "12:pids:/kubepods/pod1/ctr1\n5:cpu,cpuacct:/kubepods/pod1/ctr1c\n4:memory:/kubepods/pod1/ctr1m\n0::/unified\n"
	for _, tc := range []struct {
		name    string
		data    string
		unified bool
		want    string
		err     bool
	}{
		{name: "v1 memory wins", data: v1, want: "/kubepods/pod1/ctr1m"},
		{name: "v1 cpuacct without memory", data: "5:cpu,cpuacct:/a/b\n1:name=systemd:/x\n", want: "/a/b"},
		{name: "v1 named hierarchies only", data: "1:name=systemd:/x\n", err: true},
		{name: "v2", data: "0::/kubepods/pod1/ctr1\n", unified: true, want: "/kubepods/pod1/ctr1"},
		{name: "v2 ignores v1 lines", data: v1, unified: true, want: "/unified"},
		{name: "v2 missing", data: "4:memory:/x\n", unified: true, err: true},
		{name: "garbage", data: "nonsense\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processGroup([]byte(tc.data), tc.unified)
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("processGroup = %q, %v; want %q (err %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestReadProcessCgroup(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	group := "/kubepods/pod1/c0ffee"
	writeFiles(t, filepath.Join(root, "cpuacct", group), map[string]string{"cpuacct.usage": "42\n"})
	writeFiles(t, filepath.Join(root, "memory", group), map[string]string{"memory.usage_in_bytes": "7\n"})
	writeFiles(t, filepath.Join(proc, "99"), map[string]string{"cgroup": "4:memory:" + group + "\n3:cpuacct:" + group + "\n"})
	writeFiles(t, filepath.Join(proc, "98"), map[string]string{"cgroup": "4:memory:/user.slice\n"})
	r := cgroupReader{mode: cgroups.Hybrid, root: root, now: func() time.Time { return t0 }}

	s, err := r.readProcess(proc, 99, "c0ffee")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "c0ffee" || s.CPU().GetUsageCoreNanoSeconds().GetValue() != 42 || s.Memory().GetUsageBytes().GetValue() != 7 {
		t.Errorf("sample = %+v", s)
	}
	// A reused pid (another cgroup), a gone process and no pid are NotFound.
	for _, pid := range []uint32{98, 97, 0} {
		if _, err := r.readProcess(proc, pid, "c0ffee"); !errdefs.IsNotFound(err) {
			t.Errorf("pid %d: err = %v, want NotFound", pid, err)
		}
	}
}

func TestReadProcessCgroupSelf(t *testing.T) {
	if cgroups.Mode() == cgroups.Unavailable {
		t.Skip("no cgroup filesystem")
	}
	s, err := ReadProcessCgroup(uint32(os.Getpid()), "")
	if err != nil {
		t.Fatal(err)
	}
	if s.V1 == nil && s.V2 == nil {
		t.Fatal("empty sample")
	}
}

// BenchmarkReadProcessCgroup: one in-process reading of a task's cgroup
// (what the sampler does per running container per period).
func BenchmarkReadProcessCgroup(b *testing.B) {
	if cgroups.Mode() == cgroups.Unavailable {
		b.Skip("no cgroup filesystem")
	}
	pid := uint32(os.Getpid())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadProcessCgroup(pid, ""); err != nil {
			b.Fatal(err)
		}
	}
}

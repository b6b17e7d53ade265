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

func TestCgroupDir(t *testing.T) {
	v1 := []byte("12:pids:/kubepods/podX/ctr1\n11:memory:/kubepods/podX/ctr1\n10:cpu,cpuacct:/kubepods/podX/ctr1\n0::/\n")
	v2 := []byte("0::/kubepods/podX/ctr1\n")
	for _, tc := range []struct {
		name    string
		data    []byte
		unified bool
		id      string
		want    string
		wantErr bool
	}{
		{"v1 memory", v1, false, "ctr1", "/cg/memory/kubepods/podX/ctr1", false},
		{"v2 unified", v2, true, "ctr1", "/cg/kubepods/podX/ctr1", false},
		{"v1 other container", v1, false, "ctr2", "", true},
		{"v1 without memory", []byte("3:pids:/a/ctr1\n"), false, "ctr1", "", true},
		{"v2 line missing", v1[:0], true, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cgroupDir("/cg", tc.data, tc.unified, tc.id)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("cgroupDir = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCgroupEmpty(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := CgroupEmpty(dir); err == nil {
		t.Fatal("no cgroup.procs: want an error")
	}
	write("")
	if ok, err := CgroupEmpty(dir); !ok || err != nil {
		t.Fatalf("empty cgroup: %v %v", ok, err)
	}
	write("1234\n")
	if ok, _ := CgroupEmpty(dir); ok {
		t.Fatal("a process left: want false")
	}
	write("")
	if err := os.Mkdir(filepath.Join(dir, "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _ := CgroupEmpty(dir); ok {
		t.Fatal("a child cgroup: want false")
	}
}

package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAccountSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want accountSpec
		ok   bool
	}{
		{"daemon=123", accountSpec{"daemon", 123}, true},
		{"daemon", accountSpec{}, false},
		{"=123", accountSpec{}, false},
		{"daemon=x", accountSpec{}, false},
		{"daemon=0", accountSpec{}, false},
	} {
		got, err := parseAccountSpec(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseAccountSpec(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// fakeHierarchy makes a cpuacct root and a /proc with pid 42 in group
// "/orig" and 1.5 s of its own CPU.
func fakeHierarchy(t *testing.T) (root, proc string) {
	t.Helper()
	root, proc = t.TempDir(), t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "cpuacct.usage"), "10000000000\n")
	write(filepath.Join(root, "orig", "cgroup.procs"), "")
	write(filepath.Join(proc, "42", "cgroup"), "3:cpuset:/\n2:cpu,cpuacct:/orig\n1:name=systemd:/x\n")
	write(filepath.Join(proc, "42", "stat"), "42 (containerd) S 1 42 42 0 -1 4194560 0 0 0 0 100 50 0 0 20 0 1 0 1 1 1\n")
	return root, proc
}

func TestCPUAccountSplitsByOwnerAndRestoresTheGroup(t *testing.T) {
	root, proc := fakeHierarchy(t)
	a, err := newCPUAccount(root, proc, []accountSpec{{"containerd", 42}})
	if err != nil || a == nil {
		t.Fatalf("newCPUAccount: %v, %v", a, err)
	}
	a.rmdir = os.RemoveAll // a temporary directory keeps its files
	dir := filepath.Join(root, "cri-scale-containerd")
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs")); string(b) != "42" {
		t.Fatalf("pid not moved into %s: %q", dir, b)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpuacct.usage"), []byte("1000000000"), 0o644); err != nil {
		t.Fatal(err)
	}
	r0 := a.read()
	// 4 s more on the machine, 3 s in the group of which 1 s the process's own
	_ = os.WriteFile(filepath.Join(root, "cpuacct.usage"), []byte("14000000000"), 0o644)
	_ = os.WriteFile(filepath.Join(dir, "cpuacct.usage"), []byte("4000000000"), 0o644)
	_ = os.WriteFile(filepath.Join(proc, "42", "stat"), []byte("42 (containerd) S 1 42 42 0 -1 4194560 0 0 0 0 150 100 0 0 20 0 1 0 1 1 1\n"), 0o644)
	s := a.split(r0, a.read())
	want := CPUSplit{"all": 4, "containerd": 1, "containerd children": 2, "rest": 1}
	for k, v := range want {
		if math.Abs(s[k]-v) > 1e-9 {
			t.Errorf("split[%q] = %v, want %v (all: %v)", k, s[k], v, s)
		}
	}
	if err := a.close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "orig", "cgroup.procs")); strings.TrimSpace(string(b)) != "42" {
		t.Errorf("pid not moved back to its group: %q", b)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("group %s left: %v", dir, err)
	}
}

func TestCPUAccountWithoutCpuacctSplitsNothing(t *testing.T) {
	a, err := newCPUAccount(t.TempDir(), "/proc", []accountSpec{{"x", os.Getpid()}})
	if err != nil || a != nil {
		t.Fatalf("got %v, %v; want nil, nil", a, err)
	}
	if s := a.split(a.read(), a.read()); s != nil {
		t.Errorf("split = %v, want nil", s)
	}
	if err := a.close(); err != nil {
		t.Error(err)
	}
}

func TestWriteCPUSplit(t *testing.T) {
	var b strings.Builder
	writeCPUSplit(&b, []*Result{
		{Name: "a", CPUSplit: map[string]CPUSplit{"up": {"all": 10, "daemon": 2, "daemon children": 3, "rest": 5}, "down": {"all": 10, "daemon": 2, "daemon children": 3, "rest": 5}}},
		{Name: "b"},
	})
	out := b.String()
	for _, s := range []string{"daemon children", "20.0", "4.0 (20%)", "6.0 (30%)", "10.0 (50%)"} {
		if !strings.Contains(out, s) {
			t.Errorf("missing %q in:\n%s", s, out)
		}
	}
}

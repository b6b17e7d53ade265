package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMountsUnder(t *testing.T) {
	mi := `22 1 0:21 / /run rw - tmpfs tmpfs rw
30 22 0:4 net:[4026532] /run/cri-chaos/cri/netns/abc/net rw - nsfs nsfs rw
31 22 0:4 net:[4026533] /run/cri-chaos/cri2/x rw - nsfs nsfs rw
32 22 0:50 / /run/cri-chaos/cri/with\040space rw - tmpfs shm rw
`
	got := MountsUnder([]byte(mi), "/run/cri-chaos/cri/")
	want := []string{"/run/cri-chaos/cri/netns/abc/net", "/run/cri-chaos/cri/with space"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MountsUnder = %v, want %v", got, want)
	}
}

func TestIPAMAllocations(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"lock", "last_reserved_ip.0", "10.233.0.5", "10.233.0.6"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := IPAMAllocations(dir)
	if err != nil || !reflect.DeepEqual(got, []string{"10.233.0.5", "10.233.0.6"}) {
		t.Fatalf("IPAMAllocations = %v, %v", got, err)
	}
	if got, err := IPAMAllocations(filepath.Join(dir, "none")); err != nil || got != nil {
		t.Fatalf("missing dir: %v, %v", got, err)
	}
}

func TestShimOf(t *testing.T) {
	cmd := func(a ...string) []byte { return []byte(strings.Join(a, "\x00") + "\x00") }
	addr := "/run/cri-chaos/containerd.sock"
	for _, tc := range []struct {
		cmdline []byte
		want    bool
	}{
		{cmd("/usr/local/bin/containerd-shim-runc-v2", "-namespace", "cri-chaos", "-id", "x", "-address", addr), true},
		{cmd("/usr/local/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "x", "-address", addr), false},
		{cmd("/usr/local/bin/containerd-shim-runc-v2", "-namespace", "cri-chaos", "-address", "/run/cri-containerd-stack/containerd.sock"), false},
		{cmd("/bin/sleep", "-namespace", "cri-chaos", "-address", addr), false},
		{nil, false},
	} {
		if got := ShimOf(tc.cmdline, addr, "cri-chaos"); got != tc.want {
			t.Errorf("ShimOf(%q) = %v, want %v", tc.cmdline, got, tc.want)
		}
	}
}

func TestIptablesChains(t *testing.T) {
	save := `*nat
:CNI-aaa - [0:0]
-A POSTROUTING -s 10.231.0.135/32 -m comment --comment "name: \"cri-containerd\" id: \"d0\"" -j CNI-other
-A POSTROUTING -s 10.233.0.5/32 -m comment --comment "name: \"cri-chaos\" id: \"e1\"" -j CNI-aaa
-A CNI-aaa -d 10.233.0.0/16 -m comment --comment "name: \"cri-chaos\" id: \"e1\"" -j ACCEPT
-A CNI-aaa ! -d 224.0.0.0/4 -m comment --comment "name: \"cri-chaos\" id: \"e1\"" -j MASQUERADE
COMMIT
`
	got := IptablesChains([]byte(save), "cri-chaos")
	want := []string{"POSTROUTING:1", "CNI-aaa"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("IptablesChains = %v, want %v", got, want)
	}
}

func TestFilesUnder(t *testing.T) {
	root := t.TempDir()
	id := strings.Repeat("ab", 32)
	for _, d := range []string{"containers", "sandboxes/" + id, "netns"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "containers", "status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := FilesUnder(root)
	want := []string{filepath.Join(root, "containers", "status"), filepath.Join(root, "sandboxes", id)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FilesUnder = %v, want %v", got, want)
	}
}

func TestCountOrphans(t *testing.T) {
	for in, want := range map[string]int{
		`{"namespace":"x","findings":[{"kind":"netns"},{"kind":"ip","young":true},{"kind":"shim"}]}`: 2,
		`{"findings":[]}`:   0,
		`{"findings":null}`: 0,
	} {
		if got, ok := countOrphans([]byte(in)); got != want || !ok {
			t.Errorf("countOrphans(%s) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if _, ok := countOrphans([]byte("not json")); ok {
		t.Error("countOrphans accepted non-JSON")
	}
}

package spec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	testPasswd = `root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
default-user:x:1000:1000::/home/default-user:/bin/sh
`
	testGroup = `root:x:0:
www-data:x:33:
default-user:x:1000:
other:x:1004:
group-defined-in-image:x:50000:default-user
`
	// testDaemonOOM is the fake daemon's own oom_score_adj.
	testDaemonOOM = -500
)

var testCaps = []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_SYS_TIME"}

// fakeHost is a host with seccomp, without AppArmor, on cgroup v1, where a
// path containing "shared" is on a shared mount, "slave" on a slave one and
// anything else on a private one.
func fakeHost() hostDeps {
	return hostDeps{
		oomScoreAdj:           func() (int, error) { return testDaemonOOM, nil },
		hostname:              func() (string, error) { return "node-1", nil },
		cgroupUnified:         func() bool { return false },
		swapAvailable:         func() bool { return true },
		hugetlbAvailable:      func() bool { return true },
		seccompEnabled:        func() bool { return true },
		apparmorEnabled:       func() bool { return false },
		apparmorProfileExists: func(name string) (bool, error) { return name == "my-profile", nil },
		lookupMount: func(p string) (*mountinfo.Info, error) {
			switch {
			case p == "/sys/fs/cgroup":
				return &mountinfo.Info{Mountpoint: "/sys/fs/cgroup", VFSOptions: "rw,nsdelegate,memory_recursiveprot"}, nil
			case strings.Contains(p, "shared"):
				return &mountinfo.Info{Mountpoint: filepath.Dir(p), Optional: "shared:12"}, nil
			case strings.Contains(p, "slave"):
				return &mountinfo.Info{Mountpoint: filepath.Dir(p), Optional: "master:7"}, nil
			}
			return &mountinfo.Info{Mountpoint: "/"}, nil
		},
		runningInUserNS: func() bool { return false },
		currentCaps:     func() ([]string, error) { return slices.Clone(testCaps), nil },
	}
}

// newTestGenerator returns a Generator that asks h instead of the host.
func newTestGenerator(t testing.TB, h hostDeps) *Generator {
	t.Helper()
	return &Generator{host: h}
}

// testRootfs is an image rootfs with /etc/passwd and /etc/group.
func testRootfs(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"passwd": testPasswd, "group": testGroup} {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// generate applies opts to containerd's default spec, as client.WithNewSpec
// does for a container without a snapshot.
func generate(t testing.TB, id string, opts []oci.SpecOpts) (*runtimespec.Spec, error) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	return oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func findMount(s *runtimespec.Spec, dst string) *runtimespec.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dst {
			return &s.Mounts[i]
		}
	}
	return nil
}

func countMounts(s *runtimespec.Spec, dst string) int {
	n := 0
	for _, m := range s.Mounts {
		if m.Destination == dst {
			n++
		}
	}
	return n
}

// namespace returns the namespace of type t and whether the spec has one.
func namespace(s *runtimespec.Spec, typ runtimespec.LinuxNamespaceType) (runtimespec.LinuxNamespace, bool) {
	for _, n := range s.Linux.Namespaces {
		if n.Type == typ {
			return n, true
		}
	}
	return runtimespec.LinuxNamespace{}, false
}

func wantNS(t *testing.T, s *runtimespec.Spec, typ runtimespec.LinuxNamespaceType, present bool, path string) {
	t.Helper()
	n, ok := namespace(s, typ)
	if ok != present {
		t.Fatalf("namespace %s present=%v, want %v (%+v)", typ, ok, present, s.Linux.Namespaces)
	}
	if ok && n.Path != path {
		t.Fatalf("namespace %s path %q, want %q", typ, n.Path, path)
	}
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

func hasEnv(s *runtimespec.Spec, kv string) bool {
	return slices.Contains(s.Process.Env, kv)
}

func envCount(s *runtimespec.Spec, key string) int {
	n := 0
	for _, e := range s.Process.Env {
		if strings.HasPrefix(e, key+"=") {
			n++
		}
	}
	return n
}

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func TestLookupMountOnThisHost(t *testing.T) {
	dir := t.TempDir()
	info, err := lookupMount(dir)
	if err != nil {
		t.Fatal(err)
	}
	resolved, _ := filepath.EvalSymlinks(dir)
	if !strings.HasPrefix(resolved, info.Mountpoint) {
		t.Fatalf("mount point %q does not hold %q", info.Mountpoint, resolved)
	}
	if _, err := lookupMount(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("lookup of a missing path succeeded")
	}
}

func TestParseLegacyProfile(t *testing.T) {
	for in, want := range map[string]*runtimeapi.SecurityProfile{
		"":                nil,
		"runtime/default": {ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		"docker/default":  {ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
		"unconfined":      {ProfileType: runtimeapi.SecurityProfile_Unconfined},
		"localhost/a/b":   {ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "a/b"},
	} {
		got, err := parseLegacyProfile(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if (got == nil) != (want == nil) || (got != nil && (got.ProfileType != want.ProfileType || got.LocalhostRef != want.LocalhostRef)) {
			t.Fatalf("%q: got %v, want %v", in, got, want)
		}
	}
	if _, err := parseLegacyProfile("/abs/path"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("invalid profile: %v", err)
	}
}

package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func idmap(c, h, l uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: c, HostId: h, Length: l}
}

// podUserns is a POD-mode user namespace with the same uid and gid mappings.
func podUserns(m ...*runtimeapi.IDMapping) *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: slices.Clone(m)}}
}

var wantMap = []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 65536}}

func TestUserNamespaceMappings(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ns         *runtimeapi.NamespaceOption
		wantErr    bool
		uids, gids []runtimespec.LinuxIDMapping
	}{
		{name: "no options: the host's", ns: nil},
		{name: "no userns options: the host's", ns: &runtimeapi.NamespaceOption{}},
		{name: "NODE", ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}},
		{
			name: "NODE with mappings",
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_NODE, Uids: []*runtimeapi.IDMapping{idmap(0, 1000, 10)},
			}},
			wantErr: true,
		},
		{name: "POD", ns: podUserns(idmap(0, 1000, 65536)), uids: wantMap, gids: wantMap},
		{
			name: "POD with different uid and gid maps",
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{idmap(0, 1000, 65536)}, Gids: []*runtimeapi.IDMapping{idmap(0, 5000, 10)},
			}},
			uids: wantMap, gids: []runtimespec.LinuxIDMapping{{ContainerID: 0, HostID: 5000, Size: 10}},
		},
		{name: "POD without mappings", ns: podUserns(), wantErr: true},
		{
			name: "POD without gid mappings",
			ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{
				Mode: runtimeapi.NamespaceMode_POD, Uids: []*runtimeapi.IDMapping{idmap(0, 1000, 10)},
			}},
			wantErr: true,
		},
		{name: "POD with a nil mapping", ns: podUserns(nil, nil), wantErr: true},
		{name: "POD with two mapping lines", ns: podUserns(idmap(0, 1000, 100000), idmap(0, 2000, 100000)), wantErr: true},
		{name: "POD not mapping container ID 0", ns: podUserns(idmap(1, 1000, 100000)), wantErr: true},
		{name: "POD with length 0", ns: podUserns(idmap(0, 1000, 0)), wantErr: true},
		{name: "POD up to the last host ID", ns: podUserns(idmap(0, 4294967294, 1)), uids: []runtimespec.LinuxIDMapping{{HostID: 4294967294, Size: 1}}, gids: []runtimespec.LinuxIDMapping{{HostID: 4294967294, Size: 1}}},
		{name: "POD beyond the last host ID", ns: podUserns(idmap(0, 4294967295, 1)), wantErr: true},
		{name: "POD overflowing 32 bits", ns: podUserns(idmap(0, 1<<31, 1<<31+1)), wantErr: true},
		{name: "CONTAINER", ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}}, wantErr: true},
		{name: "TARGET", ns: &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uids, gids, err := UserNamespaceMappings(tc.ns)
			if tc.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				if RemapSnapshotOpts(tc.ns) != nil {
					t.Fatal("snapshot options for invalid user namespace options")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantEqual(t, "uids", uids, tc.uids)
			wantEqual(t, "gids", gids, tc.gids)
			var info snapshots.Info
			for _, o := range RemapSnapshotOpts(tc.ns) {
				if err := o(&info); err != nil {
					t.Fatal(err)
				}
			}
			if tc.uids == nil {
				if len(info.Labels) != 0 {
					t.Fatalf("remap labels %v for the host's user namespace", info.Labels)
				}
				return
			}
			if info.Labels[snapshots.LabelSnapshotUIDMapping] == "" || info.Labels[snapshots.LabelSnapshotGIDMapping] == "" {
				t.Fatalf("no remap labels: %v", info.Labels)
			}
		})
	}
}

func TestRemapSnapshotLabels(t *testing.T) {
	var info snapshots.Info
	for _, o := range RemapSnapshotOpts(podUserns(idmap(0, 1000, 65536))) {
		if err := o(&info); err != nil {
			t.Fatal(err)
		}
	}
	// containerd's userns.IDMap format: containerID:hostID:size per line.
	wantEqual(t, "labels", info.Labels, map[string]string{
		snapshots.LabelSnapshotUIDMapping: "0:1000:65536",
		snapshots.LabelSnapshotGIDMapping: "0:1000:65536",
	})
}

func wantUserns(t *testing.T, s *runtimespec.Spec, path string) {
	t.Helper()
	wantNS(t, s, runtimespec.UserNamespace, true, path)
	wantEqual(t, "uid mappings", s.Linux.UIDMappings, wantMap)
	wantEqual(t, "gid mappings", s.Linux.GIDMappings, wantMap)
}

func TestSandboxUserNamespace(t *testing.T) {
	runSandboxCases(t, []sbCase{
		{
			name: "POD: joins the user namespace owning the pod netns, with the mappings",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				p.UsernsPath = "/run/cri/sandboxes/sb-1/netns/userns"
				p.EnableUnprivilegedICMP = true
				p.EnableUnprivilegedPorts = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantUserns(t, s, "/run/cri/sandboxes/sb-1/netns/userns")
				wantNS(t, s, runtimespec.NetworkNamespace, true, "/var/run/netns/cni-1")
				if m := findMount(s, "/sys"); m == nil || m.Type != "sysfs" {
					t.Fatalf("/sys %+v, want sysfs (the user namespace owns the netns)", m)
				}
				// The ping range names gids the user namespace does not map.
				if _, ok := s.Linux.Sysctl[sysctlPingGroupRange]; ok {
					t.Fatalf("sysctls %v: ping_group_range set in a user namespace", s.Linux.Sysctl)
				}
				if s.Linux.Sysctl[sysctlUnprivilegedPortStart] != "0" {
					t.Fatalf("sysctls %v", s.Linux.Sysctl)
				}
			},
		},
		{
			name: "POD with host network: a new user namespace, /sys bound read-only",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				sandboxSC(p).NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
				p.NetNSPath = ""
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantUserns(t, s, "")
				wantNS(t, s, runtimespec.NetworkNamespace, false, "")
				m := findMount(s, "/sys")
				if m == nil || m.Type != "bind" || m.Source != "/sys" || !slices.Contains(m.Options, "rro") || !slices.Contains(m.Options, "rbind") {
					t.Fatalf("/sys %+v, want a recursive read-only bind", m)
				}
				if countMounts(s, "/sys") != 1 {
					t.Fatal("two /sys mounts")
				}
			},
		},
		{
			name: "POD with pod network but no user namespace path",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "POD with an invalid mapping",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).NamespaceOptions = podUserns(idmap(1, 1000, 65536))
				p.UsernsPath = "/x"
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "NODE: the host's user namespace",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}
				p.EnableUnprivilegedICMP = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.UserNamespace, false, "")
				if len(s.Linux.UIDMappings) != 0 || len(s.Linux.GIDMappings) != 0 {
					t.Fatalf("mappings %v %v", s.Linux.UIDMappings, s.Linux.GIDMappings)
				}
				if s.Linux.Sysctl[sysctlPingGroupRange] == "" {
					t.Fatalf("sysctls %v", s.Linux.Sysctl)
				}
			},
		},
	})
}

func TestContainerUserNamespace(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "POD: joins the pause's user namespace; sandbox files and image volumes idmapped, CRI mounts as asked, /dev/shm not",
			mod: func(t *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				sbsc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				dir := t.TempDir()
				p.HostsPath = filepath.Join(dir, "hosts")
				if err := os.WriteFile(p.HostsPath, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				p.ShmPath = dir
				vol, plain := t.TempDir(), t.TempDir()
				p.Config.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/data", HostPath: vol, UidMappings: []*runtimeapi.IDMapping{idmap(0, 1000, 65536)}, GidMappings: []*runtimeapi.IDMapping{idmap(0, 1000, 65536)}},
					{ContainerPath: "/plain", HostPath: plain},
				}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantUserns(t, s, "/proc/42/ns/user")
				if m := findMount(s, "/sys"); m == nil || m.Type != "sysfs" {
					t.Fatalf("/sys %+v", m)
				}
				for _, dst := range []string{etcHosts, "/data"} {
					m := findMount(s, dst)
					if m == nil {
						t.Fatalf("no %s mount", dst)
					}
					wantEqual(t, dst+" uid mappings", m.UIDMappings, wantMap)
					wantEqual(t, dst+" gid mappings", m.GIDMappings, wantMap)
				}
				for _, dst := range []string{devShm, "/plain"} {
					if m := findMount(s, dst); m == nil || m.UIDMappings != nil || m.GIDMappings != nil {
						t.Fatalf("%s: %+v, want a mount without mappings", dst, m)
					}
				}
			},
		},
		{
			name: "POD with host network: /sys bound read-only",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				sbsc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				csc(p).NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
				sbsc(p).NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
				p.NetNSPath = ""
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantUserns(t, s, "/proc/42/ns/user")
				if m := findMount(s, "/sys"); m == nil || m.Type != "bind" || !slices.Contains(m.Options, "rro") {
					t.Fatalf("/sys %+v", m)
				}
			},
		},
		{
			name: "POD container in a NODE pod",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "NODE container in a POD pod",
			mod: func(_ *testing.T, p *ContainerParams) {
				sbsc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "mappings differ from the pod's",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				sbsc(p).NamespaceOptions = podUserns(idmap(0, 2000, 65536))
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "POD without a pause process",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				sbsc(p).NamespaceOptions = podUserns(idmap(0, 1000, 65536))
				p.SandboxPid = 0
			},
			wantErr: errdefs.ErrFailedPrecondition,
		},
	})
}

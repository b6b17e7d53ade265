package spec

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func baseSandbox(t testing.TB) SandboxParams {
	return SandboxParams{
		ID: "sb-1",
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid-1"},
			Hostname:     "pod-host",
			LogDirectory: "/var/log/pods/ns_pod_uid-1",
		},
		ImageConfig: ocispec.Image{Config: ocispec.ImageConfig{
			Entrypoint: []string{"/pause"},
			Env:        []string{"PATH=/bin"},
		}},
		ImageName:      "registry.k8s.io/pause:3.10.2",
		NetNSPath:      "/var/run/netns/cni-1",
		ShmPath:        "/run/cri/sandboxes/sb-1/shm",
		ResolvConfPath: "/var/lib/cri/sandboxes/sb-1/resolv.conf",
		rootfs:         testRootfs(t),
	}
}

func sandboxSC(p *SandboxParams) *runtimeapi.LinuxSandboxSecurityContext {
	if p.Config.Linux == nil {
		p.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	if p.Config.Linux.SecurityContext == nil {
		p.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
	}
	return p.Config.Linux.SecurityContext
}

func sandboxLinux(p *SandboxParams) *runtimeapi.LinuxPodSandboxConfig {
	sandboxSC(p)
	return p.Config.Linux
}

type sbCase struct {
	name    string
	mod     func(t *testing.T, p *SandboxParams)
	host    func(h *hostDeps)
	wantErr error
	check   func(t *testing.T, s *runtimespec.Spec)
}

func runSandboxCases(t *testing.T, cases []sbCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHost()
			if tc.host != nil {
				tc.host(&h)
			}
			g := newTestGenerator(t, h)
			p := baseSandbox(t)
			if tc.mod != nil {
				tc.mod(t, &p)
			}
			opts, err := g.SandboxSpecOpts(p)
			var s *runtimespec.Spec
			if err == nil {
				s, err = generate(t, p.ID, opts)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestSandboxSpec(t *testing.T) {
	runSandboxCases(t, []sbCase{
		{
			name: "pause process: image args and env, read-only root, hostname, defaults cleared",
			mod: func(_ *testing.T, p *SandboxParams) {
				p.ImageConfig.Config.Cmd = []string{"-v"}
				p.ImageConfig.Config.WorkingDir = "/w"
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"/pause", "-v"})
				wantEqual(t, "env", s.Process.Env, []string{"PATH=/bin"})
				wantEqual(t, "cwd", s.Process.Cwd, "/w")
				wantEqual(t, "hostname", s.Hostname, "pod-host")
				if !s.Root.Readonly {
					t.Fatal("pause rootfs writable")
				}
				if s.Process.Rlimits != nil || s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" {
					t.Fatal("default security settings kept")
				}
				if !s.Process.NoNewPrivileges {
					t.Fatal("pause without no_new_privs")
				}
				if findMount(s, "/run") != nil {
					t.Fatal("/run kept")
				}
			},
		},
		{
			name:    "image without entrypoint or cmd",
			mod:     func(_ *testing.T, p *SandboxParams) { p.ImageConfig.Config.Entrypoint = nil },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "nil config",
			mod:     func(_ *testing.T, p *SandboxParams) { p.Config = nil },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "pod namespaces",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.NetworkNamespace, true, "/var/run/netns/cni-1")
				wantNS(t, s, runtimespec.UTSNamespace, true, "")
				wantNS(t, s, runtimespec.IPCNamespace, true, "")
				wantNS(t, s, runtimespec.PIDNamespace, true, "")
				wantNS(t, s, runtimespec.MountNamespace, true, "")
			},
		},
		{
			name: "host network, PID and IPC",
			mod: func(_ *testing.T, p *SandboxParams) {
				p.NetNSPath, p.ShmPath = "", ""
				sandboxSC(p).NamespaceOptions = &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE,
				}
				sandboxLinux(p).Sysctls = map[string]string{"kernel.shm_rmid_forced": "1"}
				p.EnableUnprivilegedPorts, p.EnableUnprivilegedICMP = true, true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				for _, typ := range []runtimespec.LinuxNamespaceType{runtimespec.NetworkNamespace, runtimespec.UTSNamespace, runtimespec.PIDNamespace, runtimespec.IPCNamespace} {
					wantNS(t, s, typ, false, "")
				}
				if s.Hostname != "" {
					t.Fatalf("hostname %q without a UTS namespace", s.Hostname)
				}
				if m := findMount(s, devShm); m == nil || m.Source != devShm || m.Type != "bind" {
					t.Fatalf("/dev/shm %+v", m)
				}
				wantEqual(t, "sysctls", s.Linux.Sysctl, map[string]string{"kernel.shm_rmid_forced": "1"})
			},
		},
		{
			name:    "pod network without a netns path",
			mod:     func(_ *testing.T, p *SandboxParams) { p.NetNSPath = "" },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "pod /dev/shm and resolv.conf are bound read-only",
			check: func(t *testing.T, s *runtimespec.Spec) {
				want := []string{"rbind", "ro", "nosuid", "nodev", "noexec"}
				shm := findMount(s, devShm)
				if shm == nil || shm.Source != "/run/cri/sandboxes/sb-1/shm" || !slices.Equal(shm.Options, want) {
					t.Fatalf("/dev/shm %+v", shm)
				}
				if countMounts(s, devShm) != 1 {
					t.Fatal("default /dev/shm kept")
				}
				rc := findMount(s, etcResolvConf)
				if rc == nil || rc.Source != "/var/lib/cri/sandboxes/sb-1/resolv.conf" || !slices.Equal(rc.Options, want) {
					t.Fatalf("resolv.conf %+v", rc)
				}
				if findMount(s, etcHosts) != nil || findMount(s, etcHostname) != nil {
					t.Fatal("hosts/hostname mounted into the pause container")
				}
			},
		},
		{
			name: "sysctls with unprivileged ports and ICMP; explicit values win",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxLinux(p).Sysctls = map[string]string{"fs.mqueue.msg_max": "100", sysctlUnprivilegedPortStart: "1024"}
				p.EnableUnprivilegedPorts, p.EnableUnprivilegedICMP = true, true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "sysctls", s.Linux.Sysctl, map[string]string{
					"fs.mqueue.msg_max":         "100",
					sysctlUnprivilegedPortStart: "1024",
					sysctlPingGroupRange:        "0 2147483647",
				})
			},
		},
		{
			name: "no unprivileged ICMP inside a user namespace",
			host: func(h *hostDeps) { h.runningInUserNS = func() bool { return true } },
			mod:  func(_ *testing.T, p *SandboxParams) { p.EnableUnprivilegedICMP = true },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if _, ok := s.Linux.Sysctl[sysctlPingGroupRange]; ok {
					t.Fatal("ping_group_range set")
				}
			},
		},
		{
			name: "cpu shares 2 and oom_score_adj -998",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "shares", *s.Linux.Resources.CPU.Shares, uint64(DefaultSandboxCPUShares))
				wantEqual(t, "oom", *s.Process.OOMScoreAdj, DefaultSandboxOOMScoreAdj)
			},
		},
		{
			name: "oom_score_adj clamped to the daemon's",
			mod:  func(_ *testing.T, p *SandboxParams) { p.RestrictOOMScoreAdj = true },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "oom", *s.Process.OOMScoreAdj, testDaemonOOM)
			},
		},
		{
			name: "cgroupfs and systemd cgroup paths",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxLinux(p).CgroupParent = "/kubepods/besteffort/pod1"
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "/kubepods/besteffort/pod1/sb-1")
			},
		},
		{
			name: "explicit CgroupParent param wins",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxLinux(p).CgroupParent = "/ignored"
				p.CgroupParent = "/kubepods/pod2"
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "/kubepods/pod2/sb-1")
			},
		},
		{
			name: "systemd cgroup driver",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxLinux(p).CgroupParent = "/kubepods.slice/kubepods-pod1.slice"
				p.SystemdCgroup = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "kubepods-pod1.slice:cri-containerd:sb-1")
			},
		},
		{
			name: "seccomp: unset is unconfined",
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp set")
				}
			},
		},
		{
			name: "seccomp: runtime default",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != runtimespec.ActErrno {
					t.Fatalf("seccomp %+v", s.Linux.Seccomp)
				}
			},
		},
		{
			name: "seccomp: legacy path, ignored for a privileged sandbox",
			mod: func(_ *testing.T, p *SandboxParams) {
				sandboxSC(p).SeccompProfilePath = "runtime/default"
				sandboxSC(p).Privileged = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp on a privileged sandbox")
				}
			},
		},
		{
			name: "user from the image USER",
			mod:  func(_ *testing.T, p *SandboxParams) { p.ImageConfig.Config.User = "65535:65535" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 65535, GID: 65535, AdditionalGids: []uint32{65535}})
			},
		},
		{
			name: "run_as_user/run_as_group win over the image, supplemental groups added",
			mod: func(_ *testing.T, p *SandboxParams) {
				p.ImageConfig.Config.User = "65535:65535"
				sc := sandboxSC(p)
				sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				sc.RunAsGroup = &runtimeapi.Int64Value{Value: 3000}
				sc.SupplementalGroups = []int64{4000, 5000}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 1000, GID: 3000, AdditionalGids: []uint32{3000, 4000, 5000}})
			},
		},
		{
			name: "run_as_user alone takes the group from /etc/passwd",
			mod:  func(_ *testing.T, p *SandboxParams) { sandboxSC(p).RunAsUser = &runtimeapi.Int64Value{Value: 33} },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid/gid", [2]uint32{s.Process.User.UID, s.Process.User.GID}, [2]uint32{33, 33})
			},
		},
		{
			name:    "run_as_group without run_as_user",
			mod:     func(_ *testing.T, p *SandboxParams) { sandboxSC(p).RunAsGroup = &runtimeapi.Int64Value{Value: 3000} },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "annotations",
			mod: func(_ *testing.T, p *SandboxParams) {
				p.Config.Annotations = map[string]string{"pod.example/x": "1", "other": "2"}
				p.PodAnnotationPatterns = []string{"pod.example/*"}
				sandboxLinux(p).Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 204, MemoryLimitInBytes: 1 << 30}
				p.Annotations = map[string]string{"extra": "x"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "annotations", s.Annotations, map[string]string{
					AnnotationContainerType:    ContainerTypeSandbox,
					AnnotationSandboxID:        "sb-1",
					AnnotationSandboxName:      "pod",
					AnnotationSandboxNamespace: "ns",
					AnnotationSandboxUID:       "uid-1",
					AnnotationSandboxLogDir:    "/var/log/pods/ns_pod_uid-1",
					AnnotationSandboxImageName: "registry.k8s.io/pause:3.10.2",
					AnnotationSandboxCPUPeriod: "100000",
					AnnotationSandboxCPUQuota:  "20000",
					AnnotationSandboxCPUShares: "204",
					AnnotationSandboxMemory:    "1073741824",
					"pod.example/x":            "1",
					"extra":                    "x",
				})
			},
		},
	})
}

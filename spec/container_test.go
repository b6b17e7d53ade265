package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
)

var errBoom = errors.New("boom")

func baseContainer(t testing.TB) ContainerParams {
	return ContainerParams{
		ID: "ctr-1",
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		},
		SandboxConfig: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid-1"},
			Hostname: "pod-host",
		},
		SandboxID:  "sb-1",
		SandboxPid: 42,
		NetNSPath:  "/var/run/netns/cni-1",
		ImageConfig: ocispec.Image{Config: ocispec.ImageConfig{
			Entrypoint: []string{"/entry"},
			Cmd:        []string{"cmd-arg"},
			Env:        []string{"PATH=/img/bin", "FOO=image"},
		}},
		ImageName: "docker.io/library/busybox:latest",
		rootfs:    testRootfs(t),
	}
}

// csc returns the container's security context, creating it.
func csc(p *ContainerParams) *runtimeapi.LinuxContainerSecurityContext {
	if p.Config.Linux == nil {
		p.Config.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if p.Config.Linux.SecurityContext == nil {
		p.Config.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	return p.Config.Linux.SecurityContext
}

// sbsc returns the sandbox's security context, creating it.
func sbsc(p *ContainerParams) *runtimeapi.LinuxSandboxSecurityContext {
	if p.SandboxConfig.Linux == nil {
		p.SandboxConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{}
	}
	if p.SandboxConfig.Linux.SecurityContext == nil {
		p.SandboxConfig.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
	}
	return p.SandboxConfig.Linux.SecurityContext
}

func resources(p *ContainerParams) *runtimeapi.LinuxContainerResources {
	if p.Config.Linux == nil {
		p.Config.Linux = &runtimeapi.LinuxContainerConfig{}
	}
	if p.Config.Linux.Resources == nil {
		p.Config.Linux.Resources = &runtimeapi.LinuxContainerResources{}
	}
	return p.Config.Linux.Resources
}

type ctrCase struct {
	name    string
	mod     func(t *testing.T, p *ContainerParams)
	host    func(h *hostDeps)
	wantErr error
	check   func(t *testing.T, s *runtimespec.Spec)
}

func runContainerCases(t *testing.T, cases []ctrCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeHost()
			if tc.host != nil {
				tc.host(&h)
			}
			g := newTestGenerator(t, h)
			p := baseContainer(t)
			if tc.mod != nil {
				tc.mod(t, &p)
			}
			opts, err := g.ContainerSpecOpts(p)
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

func TestContainerProcess(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "image entrypoint and cmd",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"/entry", "cmd-arg"})
			},
		},
		{
			name: "command replaces entrypoint and drops image cmd",
			mod:  func(_ *testing.T, p *ContainerParams) { p.Config.Command = []string{"sh", "-c", "true"} },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"sh", "-c", "true"})
			},
		},
		{
			name: "args replace image cmd and keep entrypoint",
			mod:  func(_ *testing.T, p *ContainerParams) { p.Config.Args = []string{"a", "b"} },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"/entry", "a", "b"})
			},
		},
		{
			name: "command and args",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.Config.Command = []string{"/bin/echo"}
				p.Config.Args = []string{"hi"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"/bin/echo", "hi"})
			},
		},
		{
			name: "image entrypoint of one empty string is ignored",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.Entrypoint = []string{""}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "args", s.Process.Args, []string{"cmd-arg"})
			},
		},
		{
			name: "nothing to run",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.Entrypoint, p.ImageConfig.Config.Cmd = nil, nil
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "nil config",
			mod:     func(_ *testing.T, p *ContainerParams) { p.Config = nil },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "env: HOSTNAME, image env, CRI env overrides",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.Config.Envs = []*runtimeapi.KeyValue{{Key: "FOO", Value: []byte("cri")}, {Key: "BAR", Value: []byte("x=y")}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				for _, kv := range []string{"HOSTNAME=pod-host", "PATH=/img/bin", "FOO=cri", "BAR=x=y"} {
					if !hasEnv(s, kv) {
						t.Fatalf("env %q missing: %v", kv, s.Process.Env)
					}
				}
				if envCount(s, "FOO") != 1 || envCount(s, "PATH") != 1 {
					t.Fatalf("duplicate env: %v", s.Process.Env)
				}
			},
		},
		{
			name: "default PATH when the image has none, host name when the pod has none",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.Env = nil
				p.SandboxConfig.Hostname = ""
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if !hasEnv(s, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") || !hasEnv(s, "HOSTNAME=node-1") {
					t.Fatalf("env = %v", s.Process.Env)
				}
			},
		},
		{
			name: "working dir from CRI wins over the image",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.WorkingDir = "/img"
				p.Config.WorkingDir = "/cri"
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantEqual(t, "cwd", s.Process.Cwd, "/cri") },
		},
		{
			name: "working dir from the image",
			mod:  func(_ *testing.T, p *ContainerParams) { p.ImageConfig.Config.WorkingDir = "/img" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cwd", s.Process.Cwd, "/img")
			},
		},
		{
			name: "tty",
			mod:  func(_ *testing.T, p *ContainerParams) { p.Config.Tty, p.Config.Stdin = true, true },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if !s.Process.Terminal || !hasEnv(s, "TERM=xterm") {
					t.Fatalf("terminal=%v env=%v", s.Process.Terminal, s.Process.Env)
				}
			},
		},
		{
			name: "no tty by default, default security settings cleared",
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Process.Terminal {
					t.Fatal("terminal set")
				}
				if s.Process.Rlimits != nil || s.Process.ApparmorProfile != "" || s.Linux.Seccomp != nil {
					t.Fatalf("defaults kept: rlimits=%v apparmor=%q seccomp=%v", s.Process.Rlimits, s.Process.ApparmorProfile, s.Linux.Seccomp)
				}
				if s.Process.NoNewPrivileges {
					t.Fatal("no_new_privs set by default")
				}
				if s.Root.Readonly {
					t.Fatal("readonly rootfs by default")
				}
				if findMount(s, "/run") != nil {
					t.Fatal("/run tmpfs kept")
				}
				if s.Process.Capabilities.Ambient != nil {
					t.Fatal("ambient caps kept")
				}
			},
		},
		{
			name: "readonly rootfs",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).ReadonlyRootfs = true },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if !s.Root.Readonly {
					t.Fatal("rootfs not readonly")
				}
			},
		},
		{
			name: "no_new_privs",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).NoNewPrivs = true },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if !s.Process.NoNewPrivileges {
					t.Fatal("no_new_privs not set")
				}
			},
		},
	})
}

func TestContainerBundleRootIsRelative(t *testing.T) {
	g := newTestGenerator(t, fakeHost())
	p := baseContainer(t)
	p.rootfs = ""
	p.Config.Command = []string{"sh"}
	csc(&p).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
	opts, err := g.ContainerSpecOpts(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := generate(t, p.ID, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, "root", s.Root.Path, "rootfs")
}

func TestContainerMounts(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "bind mounts: ro, rw, private, sorted parents first",
			mod: func(t *testing.T, p *ContainerParams) {
				d := t.TempDir()
				p.Config.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/data/sub", HostPath: d, Readonly: true, SelinuxRelabel: true},
					{ContainerPath: "/data", HostPath: d, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
				}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				var order []string
				for _, m := range s.Mounts {
					if strings.HasPrefix(m.Destination, "/data") {
						order = append(order, m.Destination)
					}
				}
				wantEqual(t, "order", order, []string{"/data", "/data/sub"})
				wantEqual(t, "/data opts", findMount(s, "/data").Options, []string{"rbind", "rprivate", "rw"})
				wantEqual(t, "/data/sub opts", findMount(s, "/data/sub").Options, []string{"rbind", "rprivate", "ro"})
				if findMount(s, "/data").Type != "bind" {
					t.Fatal("not a bind mount")
				}
				if s.Linux.RootfsPropagation != "" {
					t.Fatalf("root propagation %q", s.Linux.RootfsPropagation)
				}
			},
		},
		{
			name: "missing host path is created as a directory",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/new", HostPath: filepath.Join(t.TempDir(), "a", "b")}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				fi, err := os.Stat(findMount(s, "/new").Source)
				if err != nil || !fi.IsDir() {
					t.Fatalf("host path not created: %v", err)
				}
			},
		},
		{
			name: "symlinked host path is resolved",
			mod: func(t *testing.T, p *ContainerParams) {
				d := t.TempDir()
				target := filepath.Join(d, "target")
				if err := os.Mkdir(target, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(target, filepath.Join(d, "link")); err != nil {
					t.Fatal(err)
				}
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/l", HostPath: filepath.Join(d, "link")}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if src := findMount(s, "/l").Source; filepath.Base(src) != "target" {
					t.Fatalf("source %q not resolved", src)
				}
			},
		},
		{
			name: "bidirectional on a shared mount: rshared and rshared root",
			mod: func(t *testing.T, p *ContainerParams) {
				d := filepath.Join(t.TempDir(), "shared")
				p.Config.Mounts = []*runtimeapi.Mount{
					{ContainerPath: "/s", HostPath: d, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
					{ContainerPath: "/t", HostPath: d, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
				}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "opts", findMount(s, "/s").Options, []string{"rbind", "rshared", "rw"})
				wantEqual(t, "opts", findMount(s, "/t").Options, []string{"rbind", "rslave", "rw"})
				wantEqual(t, "root propagation", s.Linux.RootfsPropagation, "rshared")
			},
		},
		{
			name: "bidirectional on a private mount fails",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/s", HostPath: t.TempDir(), Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
			},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "bidirectional on a slave mount fails",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/s", HostPath: filepath.Join(t.TempDir(), "slave"), Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
			},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "host-to-container on a slave mount: rslave root",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/s", HostPath: filepath.Join(t.TempDir(), "slave"), Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "opts", findMount(s, "/s").Options, []string{"rbind", "rslave", "rw"})
				wantEqual(t, "root propagation", s.Linux.RootfsPropagation, "rslave")
			},
		},
		{
			name: "host-to-container on a private mount fails",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/s", HostPath: t.TempDir(), Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
			},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "recursive read-only needs runtime support",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: t.TempDir(), Readonly: true, RecursiveReadOnly: true}}
			},
			wantErr: crierrors.ErrRROUnsupported,
		},
		{
			name: "recursive read-only with support and private propagation",
			mod: func(t *testing.T, p *ContainerParams) {
				p.SupportsRecursiveReadOnly = true
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: t.TempDir(), Readonly: true, RecursiveReadOnly: true,
					Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "opts", findMount(s, "/r").Options, []string{"rbind", "rprivate", "rro"})
			},
		},
		{
			name: "recursive read-only with host-to-container propagation is rejected",
			mod: func(t *testing.T, p *ContainerParams) {
				p.SupportsRecursiveReadOnly = true
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: t.TempDir(), Readonly: true, RecursiveReadOnly: true,
					Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "recursive read-only on a read-write mount is rejected",
			mod: func(t *testing.T, p *ContainerParams) {
				p.SupportsRecursiveReadOnly = true
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r", HostPath: t.TempDir(), RecursiveReadOnly: true}}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "empty host path is rejected",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/r"}}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "sandbox files follow readonly rootfs, shm is read-write",
			mod: func(t *testing.T, p *ContainerParams) {
				d := t.TempDir()
				p.HostnamePath = writeFile(t, d, "hostname", "pod-host\n")
				p.HostsPath = writeFile(t, d, "hosts", "127.0.0.1 localhost\n")
				p.ResolvConfPath = writeFile(t, d, "resolv.conf", "nameserver 1.1.1.1\n")
				p.ShmPath = t.TempDir()
				csc(p).ReadonlyRootfs = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				for _, dst := range []string{etcHostname, etcHosts, etcResolvConf} {
					m := findMount(s, dst)
					if m == nil || !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
						t.Fatalf("%s: %+v", dst, m)
					}
				}
				shm := findMount(s, devShm)
				if shm == nil || shm.Type != "bind" || !slices.Contains(shm.Options, "rw") {
					t.Fatalf("/dev/shm: %+v", shm)
				}
				if countMounts(s, devShm) != 1 {
					t.Fatal("default /dev/shm kept")
				}
			},
		},
		{
			name: "sandbox files are read-write with a writable rootfs; missing ones are skipped",
			mod: func(t *testing.T, p *ContainerParams) {
				d := t.TempDir()
				p.HostsPath = writeFile(t, d, "hosts", "127.0.0.1 localhost\n")
				p.ResolvConfPath = filepath.Join(d, "missing")
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "hosts opts", findMount(s, etcHosts).Options, []string{"rbind", "rprivate", "rw"})
				if findMount(s, etcResolvConf) != nil || findMount(s, etcHostname) != nil {
					t.Fatal("missing sandbox file mounted")
				}
				if m := findMount(s, devShm); m == nil || m.Type != "tmpfs" {
					t.Fatalf("default /dev/shm expected without ShmPath: %+v", m)
				}
			},
		},
		{
			name: "a CRI mount replaces the sandbox's /etc/hosts",
			mod: func(t *testing.T, p *ContainerParams) {
				d := t.TempDir()
				p.HostsPath = writeFile(t, d, "hosts", "x\n")
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/etc/hosts", HostPath: writeFile(t, d, "my-hosts", "y\n")}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if countMounts(s, etcHosts) != 1 || filepath.Base(findMount(s, etcHosts).Source) != "my-hosts" {
					t.Fatalf("/etc/hosts: %+v", findMount(s, etcHosts))
				}
			},
		},
		{
			name: "host IPC uses the host /dev/shm",
			mod: func(t *testing.T, p *ContainerParams) {
				p.ShmPath = ""
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
				sbsc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Ipc: runtimeapi.NamespaceMode_NODE}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if m := findMount(s, devShm); m == nil || m.Source != devShm || m.Type != "bind" {
					t.Fatalf("/dev/shm: %+v", m)
				}
				wantNS(t, s, runtimespec.IPCNamespace, false, "")
			},
		},
		{
			name: "a /dev mount drops every default mount under /dev",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/dev", HostPath: t.TempDir()}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				for _, m := range s.Mounts {
					if strings.HasPrefix(m.Destination, "/dev/") {
						t.Fatalf("mount %s kept", m.Destination)
					}
				}
				if findMount(s, "/dev").Type != "bind" {
					t.Fatal("/dev not bound")
				}
			},
		},
		{
			name: "cgroup mount is read-only and keeps host cgroup2 options without cgroupns",
			check: func(t *testing.T, s *runtimespec.Spec) {
				m := findMount(s, "/sys/fs/cgroup")
				if m == nil || m.Type != "cgroup" {
					t.Fatalf("cgroup mount: %+v", m)
				}
				wantEqual(t, "cgroup opts", m.Options, []string{"nosuid", "noexec", "nodev", "relatime", "ro", "nsdelegate", "memory_recursiveprot"})
				wantNS(t, s, runtimespec.CgroupNamespace, false, "")
				if sys := findMount(s, "/sys"); sys == nil || !slices.Contains(sys.Options, "ro") {
					t.Fatalf("/sys: %+v", sys)
				}
			},
		},
		{
			name: "cgroup v2 host: cgroup namespace, plain cgroup mount",
			host: func(h *hostDeps) { h.cgroupUnified = func() bool { return true } },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.CgroupNamespace, true, "")
				wantEqual(t, "cgroup opts", findMount(s, "/sys/fs/cgroup").Options, []string{"nosuid", "noexec", "nodev", "relatime", "ro"})
			},
		},
		{
			name: "image volumes become bind mounts of fresh directories",
			mod: func(t *testing.T, p *ContainerParams) {
				p.ImageVolumeDir = filepath.Join(t.TempDir(), "volumes")
				p.ImageConfig.Config.Volumes = map[string]struct{}{"/var/lib/data": {}, "cache": {}, "/cri": {}}
				p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/cri", HostPath: t.TempDir()}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				for _, dst := range []string{"/var/lib/data", "/cache"} {
					m := findMount(s, dst)
					if m == nil {
						t.Fatalf("volume %s missing", dst)
					}
					if fi, err := os.Stat(m.Source); err != nil || !fi.IsDir() {
						t.Fatalf("volume dir %s: %v", m.Source, err)
					}
				}
				if countMounts(s, "/cri") != 1 {
					t.Fatal("image volume not replaced by the CRI mount")
				}
			},
		},
		{
			name: "image volumes are ignored without ImageVolumeDir",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.Volumes = map[string]struct{}{"/var/lib/data": {}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if findMount(s, "/var/lib/data") != nil {
					t.Fatal("volume mounted")
				}
			},
		},
	})
}

func TestContainerNamespaces(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "pod namespaces are joined from the sandbox",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.NetworkNamespace, true, "/var/run/netns/cni-1")
				wantNS(t, s, runtimespec.IPCNamespace, true, "/proc/42/ns/ipc")
				wantNS(t, s, runtimespec.UTSNamespace, true, "/proc/42/ns/uts")
				wantNS(t, s, runtimespec.PIDNamespace, true, "/proc/42/ns/pid")
				wantNS(t, s, runtimespec.MountNamespace, true, "")
				if s.Hostname != "" {
					t.Fatalf("hostname %q set on a container", s.Hostname)
				}
			},
		},
		{
			name: "without a netns path the pause's network is joined",
			mod:  func(_ *testing.T, p *ContainerParams) { p.NetNSPath = "" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.NetworkNamespace, true, "/proc/42/ns/net")
			},
		},
		{
			name: "PID CONTAINER gets its own namespace",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantNS(t, s, runtimespec.PIDNamespace, true, "") },
		},
		{
			name: "PID NODE uses the host's",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}
				sbsc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_NODE}
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantNS(t, s, runtimespec.PIDNamespace, false, "") },
		},
		{
			name: "PID TARGET joins the target's",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"}
				p.TargetPid = 77
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.PIDNamespace, true, "/proc/77/ns/pid")
			},
		},
		{
			name: "PID TARGET without a running target",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "other"}
			},
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "host network: no network or UTS namespace",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.NetNSPath = ""
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
				sbsc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantNS(t, s, runtimespec.NetworkNamespace, false, "")
				wantNS(t, s, runtimespec.UTSNamespace, false, "")
				wantNS(t, s, runtimespec.IPCNamespace, true, "/proc/42/ns/ipc")
			},
		},
		{
			name:    "sandbox without a pause process",
			mod:     func(_ *testing.T, p *ContainerParams) { p.SandboxPid = 0 },
			wantErr: errdefs.ErrFailedPrecondition,
		},
		{
			name: "user namespace NODE is the default",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{UsernsOptions: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantNS(t, s, runtimespec.UserNamespace, false, "") },
		},
	})
}

func TestContainerUser(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "root by default, groups from the image for root",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 0, GID: 0, AdditionalGids: []uint32{0}})
			},
		},
		{
			name: "run_as_user takes the primary group from /etc/passwd",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 33} },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid/gid", [2]uint32{s.Process.User.UID, s.Process.User.GID}, [2]uint32{33, 33})
			},
		},
		{
			name: "run_as_user unknown to the image gets gid 0",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 4242} },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid/gid", [2]uint32{s.Process.User.UID, s.Process.User.GID}, [2]uint32{4242, 0})
			},
		},
		{
			name: "run_as_user with run_as_group",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 1003}
				csc(p).RunAsGroup = &runtimeapi.Int64Value{Value: 1004}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 1003, GID: 1004, AdditionalGids: []uint32{1004}})
			},
		},
		{
			name: "run_as_username is resolved in the image",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).RunAsUsername = "www-data" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid/gid", [2]uint32{s.Process.User.UID, s.Process.User.GID}, [2]uint32{33, 33})
			},
		},
		{
			name:    "unknown run_as_username",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).RunAsUsername = "nobody-here" },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "run_as_group without a user",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).RunAsGroup = &runtimeapi.Int64Value{Value: 5} },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "negative run_as_user",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).RunAsUser = &runtimeapi.Int64Value{Value: -1} },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "image USER name:gid",
			mod:  func(_ *testing.T, p *ContainerParams) { p.ImageConfig.Config.User = "www-data:1004" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid/gid", [2]uint32{s.Process.User.UID, s.Process.User.GID}, [2]uint32{33, 1004})
			},
		},
		{
			name: "run_as_user wins over image USER",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.User = "www-data"
				csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "uid", s.Process.User.UID, uint32(1000))
			},
		},
		{
			name: "supplemental groups policy Merge adds the image's groups",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				csc(p).SupplementalGroups = []int64{1234}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1234, 50000}})
			},
		},
		{
			name: "Merge with the image USER",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.ImageConfig.Config.User = "1000"
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "gids", s.Process.User.AdditionalGids, []uint32{1000, 50000})
			},
		},
		{
			name: "supplemental groups policy Strict ignores the image's groups",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				csc(p).SupplementalGroups = []int64{1234}
				csc(p).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "user", s.Process.User, runtimespec.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 1234}})
			},
		},
		{
			name: "unknown supplemental groups policy",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy(9)
			},
			wantErr: errdefs.ErrNotImplemented,
		},
	})
}

func TestContainerPrivilegesAndCapabilities(t *testing.T) {
	defaultCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	runContainerCases(t, []ctrCase{
		{
			name: "default capabilities",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "bounding", s.Process.Capabilities.Bounding, defaultCaps)
			},
		},
		{
			name: "add and drop, with or without CAP_ prefix, any case",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Capabilities = &runtimeapi.Capability{
					AddCapabilities:  []string{"sys_admin", "CAP_NET_ADMIN"},
					DropCapabilities: []string{"CHOWN", "cap_kill"},
				}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				c := s.Process.Capabilities
				for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
					if !slices.Contains(set, "CAP_SYS_ADMIN") || !slices.Contains(set, "CAP_NET_ADMIN") ||
						slices.Contains(set, "CAP_CHOWN") || slices.Contains(set, "CAP_KILL") {
						t.Fatalf("caps %v", set)
					}
				}
			},
		},
		{
			name: "add ALL then drop one",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"SYS_TIME"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "effective", s.Process.Capabilities.Effective, []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"})
			},
		},
		{
			name: "drop ALL then add one",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"NET_BIND_SERVICE"}, DropCapabilities: []string{"all"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				c := s.Process.Capabilities
				want := []string{"CAP_NET_BIND_SERVICE"}
				wantEqual(t, "bounding", c.Bounding, want)
				wantEqual(t, "effective", c.Effective, want)
				wantEqual(t, "permitted", c.Permitted, want)
			},
		},
		{
			name: "drop ALL",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if len(s.Process.Capabilities.Bounding) != 0 || len(s.Process.Capabilities.Effective) != 0 {
					t.Fatalf("caps %+v", s.Process.Capabilities)
				}
			},
		},
		{
			name:    "privileged container needs a privileged sandbox",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).Privileged = true },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "privileged: all caps, host devices, no masked paths, writable sysfs and cgroupfs, no seccomp",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Privileged = true
				sbsc(p).Privileged = true
				csc(p).MaskedPaths = []string{"/proc/kcore"}
				csc(p).ReadonlyPaths = []string{"/proc/sys"}
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
				csc(p).Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if len(s.Process.Capabilities.Bounding) == 0 {
					t.Fatal("privileged container without capabilities")
				}
				if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
					t.Fatalf("masked=%v readonly=%v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp on a privileged container")
				}
				if !slices.Contains(findMount(s, "/sys").Options, "rw") || !slices.Contains(findMount(s, "/sys/fs/cgroup").Options, "rw") {
					t.Fatal("sysfs/cgroupfs not writable")
				}
				wantEqual(t, "device rules", s.Linux.Resources.Devices, []runtimespec.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}})
				if len(s.Linux.Devices) == 0 {
					t.Fatal("no host devices")
				}
			},
		},
		{
			name: "privileged without host devices",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Privileged = true
				sbsc(p).Privileged = true
				p.PrivilegedWithoutHostDevices = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if len(s.Linux.Devices) != 0 {
					t.Fatalf("devices %v", s.Linux.Devices)
				}
			},
		},
		{
			name: "privileged on cgroup v2: no cgroup namespace",
			host: func(h *hostDeps) { h.cgroupUnified = func() bool { return true } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Privileged = true
				sbsc(p).Privileged = true
				p.PrivilegedWithoutHostDevices = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantNS(t, s, runtimespec.CgroupNamespace, false, "") },
		},
		{
			name: "masked and readonly paths from CRI replace the defaults",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).MaskedPaths = []string{"/bin/ls"}
				csc(p).ReadonlyPaths = []string{"/tmp"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "masked", s.Linux.MaskedPaths, []string{"/bin/ls"})
				wantEqual(t, "readonly", s.Linux.ReadonlyPaths, []string{"/tmp"})
			},
		},
		{
			name: "unset masked and readonly paths are empty",
			check: func(t *testing.T, s *runtimespec.Spec) {
				if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
					t.Fatalf("masked=%v readonly=%v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
				}
			},
		},
		{
			name: "devices: host device with cgroup rule",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/mynull" || s.Linux.Devices[0].Major != 1 || s.Linux.Devices[0].Minor != 3 {
					t.Fatalf("devices %+v", s.Linux.Devices)
				}
				last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
				if !last.Allow || last.Type != "c" || *last.Major != 1 || *last.Minor != 3 || last.Access != "rw" {
					t.Fatalf("rule %+v", last)
				}
			},
		},
		{
			name: "devices: ownership from the security context",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.DeviceOwnershipFromSecurityContext = true
				csc(p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
				csc(p).RunAsGroup = &runtimeapi.Int64Value{Value: 2000}
				p.Config.Devices = []*runtimeapi.Device{{HostPath: "/dev/null", ContainerPath: "/dev/null", Permissions: "rwm"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				d := s.Linux.Devices[0]
				if *d.UID != 1000 || *d.GID != 2000 {
					t.Fatalf("device owner %d:%d", *d.UID, *d.GID)
				}
			},
		},
		{
			name: "devices: not a device",
			mod: func(t *testing.T, p *ContainerParams) {
				p.Config.Devices = []*runtimeapi.Device{{HostPath: writeFile(t, t.TempDir(), "f", ""), ContainerPath: "/dev/x", Permissions: "rwm"}}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "CDI devices without CDI",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.Config.CDIDevices = []*runtimeapi.CDIDevice{{Name: "vendor.com/gpu=0"}}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
	})
}

func TestContainerSeccompAndAppArmor(t *testing.T) {
	profileDir := t.TempDir()
	profile := writeFile(t, profileDir, "block-chmod.json",
		`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["chmod","fchmodat"],"action":"SCMP_ACT_ERRNO"}]}`)
	wantLocal := func(t *testing.T, s *runtimespec.Spec) {
		if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != runtimespec.ActAllow || len(s.Linux.Seccomp.Syscalls) != 1 {
			t.Fatalf("seccomp %+v", s.Linux.Seccomp)
		}
	}
	runContainerCases(t, []ctrCase{
		{
			name: "no profile: unconfined",
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp set")
				}
			},
		},
		{
			name: "RuntimeDefault (zero value) follows the final capabilities",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{}
				csc(p).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != runtimespec.ActErrno {
					t.Fatalf("seccomp %+v", s.Linux.Seccomp)
				}
				want := ctrdseccomp.DefaultProfile(s)
				if !reflect.DeepEqual(s.Linux.Seccomp, want) {
					t.Fatal("default profile was not computed after the capabilities")
				}
			},
		},
		{
			name: "Unconfined",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp set")
				}
			},
		},
		{
			name: "Localhost with an absolute path",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}
			},
			check: wantLocal,
		},
		{
			name: "Localhost with localhost/ prefix and a relative path under the profile root",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.SeccompProfileRoot = profileDir
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/block-chmod.json"}
			},
			check: wantLocal,
		},
		{
			name: "Localhost profile missing",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "LocalhostRef with a non-Localhost type",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault, LocalhostRef: profile}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:  "legacy seccomp_profile_path localhost/",
			mod:   func(_ *testing.T, p *ContainerParams) { csc(p).SeccompProfilePath = "localhost/" + profile },
			check: wantLocal,
		},
		{
			name: "legacy runtime/default and docker/default",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).SeccompProfilePath = "docker/default" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != runtimespec.ActErrno {
					t.Fatalf("seccomp %+v", s.Linux.Seccomp)
				}
			},
		},
		{
			name: "legacy unconfined",
			mod:  func(_ *testing.T, p *ContainerParams) { csc(p).SeccompProfilePath = "unconfined" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp set")
				}
			},
		},
		{
			name:    "legacy invalid profile",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).SeccompProfilePath = "bogus" },
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "the SecurityProfile field wins over the legacy path",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).SeccompProfilePath = "runtime/default"
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Seccomp != nil {
					t.Fatal("seccomp set")
				}
			},
		},
		{
			name: "seccomp unsupported by the host",
			host: func(h *hostDeps) { h.seccompEnabled = func() bool { return false } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			},
			wantErr: errdefs.ErrNotImplemented,
		},
		{
			name: "seccomp unsupported by the host, unconfined is fine",
			host: func(h *hostDeps) { h.seccompEnabled = func() bool { return false } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
			},
		},
		{
			name: "apparmor requested without AppArmor on the host",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			},
			wantErr: errdefs.ErrNotImplemented,
		},
		{
			name:    "apparmor legacy runtime/default without AppArmor",
			mod:     func(_ *testing.T, p *ContainerParams) { csc(p).ApparmorProfile = "runtime/default" },
			wantErr: errdefs.ErrNotImplemented,
		},
		{
			name: "apparmor unconfined or unset without AppArmor",
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Process.ApparmorProfile != "" {
					t.Fatal("apparmor profile set")
				}
			},
		},
		{
			name: "apparmor disabled by config on an AppArmor host",
			host: func(h *hostDeps) { h.apparmorEnabled = func() bool { return true } },
			mod: func(_ *testing.T, p *ContainerParams) {
				p.DisableAppArmor = true
				csc(p).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "my-profile"}
			},
			wantErr: errdefs.ErrNotImplemented,
		},
		{
			name: "apparmor localhost profile",
			host: func(h *hostDeps) { h.apparmorEnabled = func() bool { return true } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/my-profile"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "apparmor", s.Process.ApparmorProfile, "my-profile")
			},
		},
		{
			name: "apparmor localhost profile not loaded",
			host: func(h *hostDeps) { h.apparmorEnabled = func() bool { return true } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "other"}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "apparmor runtime default is skipped for privileged containers",
			host: func(h *hostDeps) { h.apparmorEnabled = func() bool { return true } },
			mod: func(_ *testing.T, p *ContainerParams) {
				csc(p).Privileged = true
				sbsc(p).Privileged = true
				p.PrivilegedWithoutHostDevices = true
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Process.ApparmorProfile != "" {
					t.Fatal("apparmor profile on a privileged container")
				}
			},
		},
	})
}

func TestContainerResourcesAndCgroups(t *testing.T) {
	runContainerCases(t, []ctrCase{
		{
			name: "cpu, memory (swap = limit), cpuset, hugepages, unified",
			mod: func(_ *testing.T, p *ContainerParams) {
				r := resources(p)
				r.CpuPeriod, r.CpuQuota, r.CpuShares = 100000, 50000, 512
				r.MemoryLimitInBytes = 64 << 20
				r.CpusetCpus, r.CpusetMems = "0-1", "0"
				r.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}
				r.Unified = map[string]string{"memory.high": "1000000"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				r := s.Linux.Resources
				wantEqual(t, "cpu", *r.CPU, runtimespec.LinuxCPU{Period: u64(100000), Quota: i64(50000), Shares: u64(512), Cpus: "0-1", Mems: "0"})
				wantEqual(t, "memory", *r.Memory, runtimespec.LinuxMemory{Limit: i64(64 << 20), Swap: i64(64 << 20)})
				wantEqual(t, "hugepages", r.HugepageLimits, []runtimespec.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}})
				wantEqual(t, "unified", r.Unified, map[string]string{"memory.high": "1000000"})
			},
		},
		{
			name: "explicit swap limit",
			mod: func(_ *testing.T, p *ContainerParams) {
				r := resources(p)
				r.MemoryLimitInBytes, r.MemorySwapLimitInBytes = 64<<20, 128<<20
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "swap", *s.Linux.Resources.Memory.Swap, int64(128<<20))
			},
		},
		{
			name: "no swap controller, no hugetlb controller",
			host: func(h *hostDeps) {
				h.swapAvailable = func() bool { return false }
				h.hugetlbAvailable = func() bool { return false }
			},
			mod: func(_ *testing.T, p *ContainerParams) {
				r := resources(p)
				r.MemoryLimitInBytes, r.MemorySwapLimitInBytes = 64<<20, 128<<20
				r.HugepageLimits = []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Linux.Resources.Memory.Swap != nil || s.Linux.Resources.HugepageLimits != nil {
					t.Fatalf("resources %+v", s.Linux.Resources)
				}
			},
		},
		{
			name: "oom_score_adj clamped to the daemon's",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.RestrictOOMScoreAdj = true
				resources(p).OomScoreAdj = -997
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantEqual(t, "oom", *s.Process.OOMScoreAdj, testDaemonOOM) },
		},
		{
			name: "oom_score_adj above the daemon's is kept when restricted",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.RestrictOOMScoreAdj = true
				resources(p).OomScoreAdj = 1000
			},
			check: func(t *testing.T, s *runtimespec.Spec) { wantEqual(t, "oom", *s.Process.OOMScoreAdj, 1000) },
		},
		{
			name: "oom_score_adj unrestricted",
			mod:  func(_ *testing.T, p *ContainerParams) { resources(p).OomScoreAdj = -997 },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "oom", *s.Process.OOMScoreAdj, -997)
			},
		},
		{
			name: "no resources: no oom_score_adj, no limits",
			check: func(t *testing.T, s *runtimespec.Spec) {
				if s.Process.OOMScoreAdj != nil || s.Linux.Resources.Memory != nil || s.Linux.Resources.CPU != nil {
					t.Fatalf("oom=%v resources=%+v", s.Process.OOMScoreAdj, s.Linux.Resources)
				}
			},
		},
		{
			name: "cannot read the daemon's oom_score_adj",
			host: func(h *hostDeps) {
				h.oomScoreAdj = func() (int, error) { return 0, errBoom }
			},
			mod: func(_ *testing.T, p *ContainerParams) {
				p.RestrictOOMScoreAdj = true
				resources(p).OomScoreAdj = 5
			},
			wantErr: errBoom,
		},
		{
			name: "cgroupfs cgroup path under the pod's parent",
			mod:  func(_ *testing.T, p *ContainerParams) { p.CgroupParent = "/kubepods/burstable/pod1" },
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "/kubepods/burstable/pod1/ctr-1")
			},
		},
		{
			name: "systemd cgroup path from a .slice parent",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.SandboxConfig.Linux = &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "kubepods-burstable-pod1.slice:cri-containerd:ctr-1")
			},
		},
		{
			name: "no cgroup parent keeps containerd's default",
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "cgroups path", s.Linux.CgroupsPath, "/k8s.io/ctr-1")
			},
		},
		{
			name: "annotations: CRI defaults, passthrough patterns, explicit extras",
			mod: func(_ *testing.T, p *ContainerParams) {
				p.SandboxConfig.Annotations = map[string]string{"pod.example/x": "1", "other": "2"}
				p.Config.Annotations = map[string]string{"ctr.example/y": "3", "nope": "4"}
				p.PodAnnotationPatterns = []string{"pod.example/*"}
				p.ContainerAnnotationPatterns = []string{"ctr.example/*"}
				p.Annotations = map[string]string{"extra": "5"}
			},
			check: func(t *testing.T, s *runtimespec.Spec) {
				wantEqual(t, "annotations", s.Annotations, map[string]string{
					AnnotationContainerType:    ContainerTypeContainer,
					AnnotationContainerName:    "app",
					AnnotationSandboxID:        "sb-1",
					AnnotationSandboxName:      "pod",
					AnnotationSandboxNamespace: "ns",
					AnnotationSandboxUID:       "uid-1",
					AnnotationImageName:        "docker.io/library/busybox:latest",
					"pod.example/x":            "1",
					"ctr.example/y":            "3",
					"extra":                    "5",
				})
			},
		},
	})
}

func TestCgroupsPath(t *testing.T) {
	for _, tc := range []struct {
		parent  string
		systemd bool
		want    string
	}{
		{"", false, ""},
		{"", true, ":cri-containerd:id"},
		{"/kubepods/pod1", false, "/kubepods/pod1/id"},
		{"kubepods-pod1.slice", false, "kubepods-pod1.slice:cri-containerd:id"},
		{"/kubepods.slice/kubepods-pod1.slice", true, "kubepods-pod1.slice:cri-containerd:id"},
	} {
		if got := CgroupsPath(tc.parent, "id", tc.systemd); got != tc.want {
			t.Errorf("CgroupsPath(%q, %v) = %q, want %q", tc.parent, tc.systemd, got, tc.want)
		}
	}
}

func TestClampOOMScoreAdjReadsOnce(t *testing.T) {
	calls := 0
	h := fakeHost()
	h.oomScoreAdj = func() (int, error) { calls++; return -100, nil }
	g := newTestGenerator(t, h)
	for _, c := range []struct{ in, want int }{{-998, -100}, {0, 0}, {-100, -100}} {
		got, err := g.clampOOMScoreAdj(c.in, true)
		if err != nil || got != c.want {
			t.Fatalf("clamp(%d) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	if got, _ := g.clampOOMScoreAdj(-998, false); got != -998 {
		t.Fatalf("unrestricted clamp changed the value: %d", got)
	}
	// The real reader is memoised; the fake here counts calls per clamp.
	if calls != 3 {
		t.Fatalf("calls = %d", calls)
	}
	if _, err := defaultHost().oomScoreAdj(); err != nil {
		t.Fatalf("reading /proc/self/oom_score_adj: %v", err)
	}
}

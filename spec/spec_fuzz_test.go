package spec

import (
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Native fuzz targets for spec generation: arbitrary CRI configs (decoded
// from the fuzzer's bytes) go through SandboxSpecOpts / ContainerSpecOpts
// and the resulting options are applied to containerd's default spec, on a
// fake host. Nothing may panic. Paths that would touch the real host (mount
// and device host paths, seccomp profile files) are moved into the test's
// temporary directory first.
//
//	go test -run '^$' -fuzz FuzzContainerSpecOpts -fuzztime 30s ./spec/
//	go test -run '^$' -fuzz FuzzSandboxSpecOpts -fuzztime 30s ./spec/

const fuzzSeccompProfile = `{"defaultAction":"SCMP_ACT_ALLOW"}`

// confine makes the host paths of cfg point into dir.
func confine(t *testing.T, dir string, ctr *runtimeapi.ContainerConfig, pods ...*runtimeapi.PodSandboxConfig) {
	t.Helper()
	profile := filepath.Join(dir, "seccomp.json")
	if err := os.WriteFile(profile, []byte(fuzzSeccompProfile), 0o644); err != nil {
		t.Fatal(err)
	}
	inside := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Join(dir, "host", filepath.Clean("/"+p))
	}
	fixProfile := func(sp *runtimeapi.SecurityProfile) {
		if sp != nil && sp.GetLocalhostRef() != "" {
			sp.LocalhostRef = profile
		}
	}
	legacy := func(p *string) {
		if len(*p) > len(localhostPrefix) && (*p)[:len(localhostPrefix)] == localhostPrefix {
			*p = localhostPrefix + profile
		}
	}
	if ctr != nil {
		for _, m := range ctr.GetMounts() {
			if m != nil {
				m.HostPath = inside(m.HostPath)
			}
		}
		for _, d := range ctr.GetDevices() {
			if d != nil {
				d.HostPath = "/dev/null"
			}
		}
		if sc := ctr.GetLinux().GetSecurityContext(); sc != nil {
			fixProfile(sc.Seccomp)
			legacy(&sc.SeccompProfilePath) //nolint:staticcheck // deprecated field still honoured
		}
	}
	for _, p := range pods {
		if sc := p.GetLinux().GetSecurityContext(); sc != nil {
			fixProfile(sc.Seccomp)
			legacy(&sc.SeccompProfilePath) //nolint:staticcheck // deprecated field still honoured
		}
	}
}

func baseContainerConfig() *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
	}
}

func baseSandboxConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid-1"},
		Hostname:     "pod-host",
		LogDirectory: "/var/log/pods/ns_pod_uid-1",
	}
}

func FuzzContainerSpecOpts(f *testing.F) {
	for _, seed := range []func(p *ContainerParams){
		func(p *ContainerParams) {},
		func(p *ContainerParams) {
			csc(p).Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}, DropCapabilities: []string{"chown"}}
			csc(p).RunAsUsername = "www-data"
			resources(p).MemoryLimitInBytes = 1 << 20
			p.Config.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/data", Readonly: true}}
		},
		func(p *ContainerParams) {
			csc(p).Privileged = true
			sbsc(p).Privileged = true
			csc(p).NamespaceOptions = &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: "x"}
			csc(p).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/p.json"}
		},
	} {
		p := ContainerParams{Config: baseContainerConfig(), SandboxConfig: baseSandboxConfig()}
		seed(&p)
		b, err := proto.Marshal(&runtimeapi.CreateContainerRequest{Config: p.Config, SandboxConfig: p.SandboxConfig})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint32(42), uint32(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, sandboxPid, targetPid uint32) {
		var req runtimeapi.CreateContainerRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		dir := t.TempDir()
		confine(t, dir, req.GetConfig(), req.GetSandboxConfig())
		p := baseContainer(t)
		p.Config, p.SandboxConfig = req.GetConfig(), req.GetSandboxConfig()
		if p.SandboxConfig == nil {
			p.SandboxConfig = baseSandboxConfig()
		}
		p.SandboxPid, p.TargetPid = sandboxPid, targetPid
		p.ImageVolumeDir = filepath.Join(dir, "volumes")
		g := newTestGenerator(t, fakeHost())
		opts, err := g.ContainerSpecOpts(p)
		if err != nil {
			return
		}
		_, _ = generate(t, "ctr-1", opts)
	})
}

func FuzzSandboxSpecOpts(f *testing.F) {
	for _, seed := range []func(p *SandboxParams){
		func(p *SandboxParams) {},
		func(p *SandboxParams) {
			sandboxLinux(p).Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
			sandboxSC(p).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sandboxSC(p).NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
		},
	} {
		sp := SandboxParams{Config: baseSandboxConfig()}
		seed(&sp)
		b, err := proto.Marshal(&runtimeapi.RunPodSandboxRequest{Config: sp.Config})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, unprivPorts, systemd bool) {
		var req runtimeapi.RunPodSandboxRequest
		if err := proto.Unmarshal(data, &req); err != nil {
			return
		}
		confine(t, t.TempDir(), nil, req.GetConfig())
		p := baseSandbox(t)
		if req.GetConfig() != nil {
			p.Config = req.GetConfig()
		}
		p.EnableUnprivilegedPorts, p.EnableUnprivilegedICMP, p.SystemdCgroup = unprivPorts, unprivPorts, systemd
		g := newTestGenerator(t, fakeHost())
		opts, err := g.SandboxSpecOpts(p)
		if err != nil {
			return
		}
		_, _ = generate(t, "sb-1", opts)
	})
}

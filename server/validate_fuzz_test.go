package server

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni"
)

// fuzzRequestTypes are the request messages FuzzValidateRequest decodes its
// input into (the first byte picks one).
var fuzzRequestTypes = []func() proto.Message{
	func() proto.Message { return new(runtimeapi.RunPodSandboxRequest) },
	func() proto.Message { return new(runtimeapi.CreateContainerRequest) },
	func() proto.Message { return new(runtimeapi.UpdateContainerResourcesRequest) },
	func() proto.Message { return new(runtimeapi.UpdatePodSandboxResourcesRequest) },
	func() proto.Message { return new(runtimeapi.ExecSyncRequest) },
	func() proto.Message { return new(runtimeapi.ExecRequest) },
	func() proto.Message { return new(runtimeapi.AttachRequest) },
	func() proto.Message { return new(runtimeapi.PortForwardRequest) },
	func() proto.Message { return new(runtimeapi.StopContainerRequest) },
	func() proto.Message { return new(runtimeapi.PullImageRequest) },
	func() proto.Message { return new(runtimeapi.ListContainersRequest) },
}

// FuzzValidateRequest decodes arbitrary bytes into a CRI request and
// validates it: the validator must never panic, must answer InvalidArgument
// (or nil), and what it accepts must keep the promises the handlers rely on.
//
//	go test -run '^$' -fuzz FuzzValidateRequest -fuzztime 30s ./server/
func FuzzValidateRequest(f *testing.F) {
	seeds := []proto.Message{
		runReq(nil), createReq(nil),
		resReq(func(r *runtimeapi.LinuxContainerResources) { r.CpuQuota = -5 }),
		&runtimeapi.UpdatePodSandboxResourcesRequest{Overhead: &runtimeapi.LinuxContainerResources{CpuShares: 2}},
		&runtimeapi.ExecSyncRequest{Cmd: []string{"ls"}, Timeout: 3},
		&runtimeapi.ExecRequest{Cmd: []string{"sh"}, Stdin: true, Tty: true},
		&runtimeapi.AttachRequest{Stdout: true},
		&runtimeapi.PortForwardRequest{Port: []int32{80}},
		&runtimeapi.StopContainerRequest{Timeout: 10},
		&runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox"}, SandboxConfig: kubeletPodConfig()},
		&runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{}}},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append([]byte{byte(i)}, b...))
	}
	for _, tc := range badRequests() {
		for i, newMsg := range fuzzRequestTypes {
			if proto.MessageName(newMsg()) == proto.MessageName(tc.req.(proto.Message)) {
				b, _ := proto.Marshal(tc.req.(proto.Message))
				f.Add(append([]byte{byte(i)}, b...))
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		req := fuzzRequestTypes[int(data[0])%len(fuzzRequestTypes)]()
		if err := proto.Unmarshal(data[1:], req); err != nil {
			return
		}
		err := validateRequestFields(req)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			if len(err.Error()) > 2048 {
				t.Fatalf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		switch r := req.(type) {
		case *runtimeapi.RunPodSandboxRequest:
			checkAcceptedPod(t, r.GetConfig())
		case *runtimeapi.CreateContainerRequest:
			if r.GetSandboxConfig() != nil {
				checkAcceptedPod(t, r.GetSandboxConfig())
			}
			checkAcceptedContainer(t, r.GetConfig(), r.GetSandboxConfig())
		}
	})
}

// checkAcceptedPod: what RunPodSandbox does with an accepted config works.
func checkAcceptedPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) {
	t.Helper()
	if _, err := cni.PodOptions("id", cfg, nil); err != nil {
		t.Fatalf("accepted pod config fails CNI options: %v", err)
	}
	for _, pm := range cni.PortMappings(cfg.GetPortMappings()) {
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 || pm.HostPort < 1 || pm.HostPort > 65535 {
			t.Fatalf("accepted port mapping %+v", pm)
		}
	}
	if d := cfg.GetLogDirectory(); d != "" && !filepath.IsAbs(d) {
		t.Fatalf("accepted log directory %q", d)
	}
	for _, p := range strings.Split(cfg.GetLinux().GetCgroupParent(), "/") {
		if p == ".." {
			t.Fatalf("accepted cgroup parent %q", cfg.GetLinux().GetCgroupParent())
		}
	}
	if n := cfg.GetMetadata().GetName(); len(n) > maxNameLen || strings.ContainsAny(n, "/;=\x00") {
		t.Fatalf("accepted pod name %q", n)
	}
}

// checkAcceptedContainer: an accepted log path stays inside the log
// directory; accepted mounts have absolute paths.
func checkAcceptedContainer(t *testing.T, cfg *runtimeapi.ContainerConfig, sb *runtimeapi.PodSandboxConfig) {
	t.Helper()
	dir := sb.GetLogDirectory()
	if dir == "" {
		dir = "/var/log/pods/x"
	}
	if lp := cfg.GetLogPath(); lp != "" {
		full := filepath.Join(dir, lp)
		if rel, err := filepath.Rel(dir, full); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || full == filepath.Clean(dir) {
			t.Fatalf("accepted log path %q escapes %q", lp, dir)
		}
	}
	for _, m := range cfg.GetMounts() {
		if !filepath.IsAbs(m.GetContainerPath()) || (m.GetImage() == nil && !filepath.IsAbs(m.GetHostPath())) {
			t.Fatalf("accepted mount %v", m)
		}
	}
	if len(cfg.GetMetadata().GetName()) > maxNameLen {
		t.Fatalf("accepted a name of %d bytes", len(cfg.GetMetadata().GetName()))
	}
	sc := cfg.GetLinux().GetSecurityContext()
	if sc.GetRunAsUser() != nil && sc.GetRunAsUsername() != "" {
		t.Fatal("accepted run_as_user with run_as_username")
	}
	if r := cfg.GetLinux().GetResources(); r.GetMemoryLimitInBytes() < 0 || (r.GetCpuQuota() < 0 && r.GetCpuQuota() != -1) {
		t.Fatalf("accepted resources %v", r)
	}
}

package server

import (
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestSELinuxOptions(t *testing.T) {
	label := &runtimeapi.SELinuxOption{Type: "spc_t"}
	pod := func(o *runtimeapi.SELinuxOption) any {
		return &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: o}}}}
	}
	ctr := func(o *runtimeapi.SELinuxOption) any {
		return &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: o}}}}
	}
	for _, tc := range []struct {
		name    string
		enabled bool
		req     any
		refused bool
	}{
		{name: "pod label, SELinux off: ignored", req: pod(label)},
		{name: "container label, SELinux off: ignored", req: ctr(label)},
		{name: "pod label, SELinux on: refused", enabled: true, req: pod(label), refused: true},
		{name: "container label, SELinux on: refused", enabled: true, req: ctr(label), refused: true},
		{name: "empty options, SELinux on", enabled: true, req: ctr(&runtimeapi.SELinuxOption{})},
		{name: "no options, SELinux on", enabled: true, req: pod(nil)},
		{name: "other request, SELinux on", enabled: true, req: &runtimeapi.StatusRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Service{selinuxEnabled: tc.enabled}
			err := s.checkSELinux(tc.req)
			if tc.refused != (err != nil) || (err != nil && !errdefs.IsFailedPrecondition(err)) {
				t.Fatalf("checkSELinux = %v, refused want %v (FailedPrecondition)", err, tc.refused)
			}
		})
	}
}

package server

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
)

func TestOCIUserns(t *testing.T) {
	for _, tc := range []struct {
		name, features string
		want           bool
	}{
		// runc 1.1.5 (Debian): no mountExtensions.
		{name: "runc 1.1.5", features: `{"ociVersionMin":"1.0.0","linux":{"namespaces":["cgroup","ipc","mount","network","pid","user","uts"]}}`},
		{name: "runc 1.5.3", features: `{"linux":{"namespaces":["cgroup","ipc","mount","network","pid","user","uts"],"mountExtensions":{"idmap":{"enabled":true}}}}`, want: true},
		{name: "idmap disabled", features: `{"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":false}}}}`},
		{name: "no user namespace", features: `{"linux":{"namespaces":["pid"],"mountExtensions":{"idmap":{"enabled":true}}}}`},
		{name: "no linux section", features: `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f ociFeatures
			if err := json.Unmarshal([]byte(tc.features), &f); err != nil {
				t.Fatal(err)
			}
			if got := ociUserns(f); got != tc.want {
				t.Fatalf("ociUserns = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckUserNamespaces(t *testing.T) {
	s := &Service{
		config: config.Config{DefaultRuntimeName: "runc", Runtimes: map[string]config.Runtime{"runc": {}, "old": {}}},
		features: map[string]*runtimeapi.RuntimeHandlerFeatures{
			"runc": {UserNamespaces: true},
			"old":  {UserNamespaces: false},
		},
	}
	pod := func(u *runtimeapi.UserNamespace) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: u},
		}}}
	}
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 65536}}
	podNS := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}
	for _, tc := range []struct {
		name    string
		cfg     *runtimeapi.PodSandboxConfig
		handler string
		wantErr error
	}{
		{name: "no user namespace on any handler", cfg: pod(nil), handler: "old"},
		{name: "NODE on any handler", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}), handler: "old"},
		{name: "POD on the default handler", cfg: pod(podNS)},
		{name: "POD on a handler without support", cfg: pod(podNS), handler: "old", wantErr: errdefs.ErrNotImplemented},
		{name: "POD on an unknown handler", cfg: pod(podNS), handler: "nope", wantErr: errdefs.ErrInvalidArgument},
		{name: "bad mapping, even without support", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m}), handler: "old", wantErr: errdefs.ErrInvalidArgument},
		{name: "CONTAINER mode", cfg: pod(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}), wantErr: errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.checkUserNamespaces(tc.cfg, tc.handler)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

package sandbox

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

func usernsPod(name string, u *runtimeapi.UserNamespace, hostNet bool) *runtimeapi.PodSandboxConfig {
	cfg := testPod(name)
	ns := &runtimeapi.NamespaceOption{UsernsOptions: u}
	if hostNet {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns}
	return cfg
}

// TestControllerRunUserns: a POD-mode user namespace makes the pod's netns
// inside a new user namespace with the pod's mappings, pinned only while
// the pause is made; host network makes no netns; invalid mappings are
// refused before anything is made.
func TestControllerRunUserns(t *testing.T) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	pod := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}

	e := newRunEnv(t)
	if _, err := e.c.Run(context.Background(), usernsPod("userns", pod, false), ""); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if e.host.UsernsPinned != 1 || len(e.host.UsernsMaps) != 0 {
		t.Fatalf("user namespace pins: %d made, %v left; want 1 made, none left", e.host.UsernsPinned, e.host.UsernsMaps)
	}
	if _, err := e.c.Run(context.Background(), usernsPod("userns-host", pod, true), ""); err != nil {
		t.Fatalf("Run with host network: %v", err)
	}
	if e.host.UsernsPinned != 1 || len(e.host.CreatedNetNS()) != 1 {
		t.Fatalf("host network: %d pins, %d netns", e.host.UsernsPinned, len(e.host.CreatedNetNS()))
	}

	bad := &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m}
	if _, err := e.c.Run(context.Background(), usernsPod("bad", bad, false), ""); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Run without gid mappings: %v, want InvalidArgument", err)
	}
	if len(e.host.CreatedNetNS()) != 1 || len(e.o.Store.List()) != 2 {
		t.Fatalf("the refused pod made %d netns, %d sandboxes", len(e.host.CreatedNetNS())-1, len(e.o.Store.List())-2)
	}
	if _, err := e.c.Run(context.Background(), usernsPod("bad", pod, false), ""); err != nil {
		t.Fatalf("the refused pod's name was not released: %v", err)
	}
}

// TestControllerRunUsernsRollsBack: a failed pause start removes the pin
// with the netns.
func TestControllerRunUsernsRollsBack(t *testing.T) {
	m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 100000, Length: 65536}}
	e := newRunEnv(t)
	e.ctrd.Configure = func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected }
	if _, err := e.c.Run(context.Background(), usernsPod("userns", &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: m, Gids: m}, false), ""); err == nil {
		t.Fatal("Run succeeded")
	}
	if e.host.UsernsPinned != 1 || len(e.host.UsernsMaps) != 0 {
		t.Fatalf("pins: %d made, %v left", e.host.UsernsPinned, e.host.UsernsMaps)
	}
	for _, ns := range e.host.CreatedNetNS() {
		if !ns.Removed {
			t.Errorf("netns %s left", ns.GetPath())
		}
	}
}

package server

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/cni/cnitest"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// withFakeCNI wires the service to the real CNI manager (go-cni, libcni)
// running the fake network plugin of cnitest, which records one allocation
// per container ID, as host-local does.
func (e *testEnv) withFakeCNI(t *testing.T) *cnitest.Plugin {
	t.Helper()
	p := cnitest.Install(t)
	m, err := cni.New(p.ConfDir, []string{p.BinDir}, cni.WithLoopbackPlugin())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Status(); err != nil {
		t.Fatalf("fake CNI network not ready: %v", err)
	}
	e.s.deps.Network = m
	return p
}

func podWithPorts(name string, pms ...*runtimeapi.PortMapping) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	cfg.PortMappings = pms
	return cfg
}

// A plugin that refuses the pod's capability arguments on ADD (portmap with
// a container port of 0, after host-local allocated an address) refuses them
// again on the rollback DEL, and the address was never released. The DEL is
// retried without them, and when nothing works the sandbox is kept NOTREADY
// for StopPodSandbox to retry: no address is leaked.
func TestRegressionIPLeakWhenCNIDelFailsOnAddArgs(t *testing.T) {
	http := &runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080}

	t.Run("rollback of a failed ADD", func(t *testing.T) {
		e := newTestEnv(t)
		p := e.withFakeCNI(t)
		p.Set(t, cnitest.FailAddCaps, true)
		p.Set(t, cnitest.FailDelCaps, true)

		_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podWithPorts("web", http)})
		if err == nil {
			t.Fatal("RunPodSandbox succeeded although ADD failed")
		}
		if got := p.Allocations(t); len(got) != 0 {
			t.Errorf("addresses leaked by the rollback: %v", got)
		}
		if got := e.s.sandboxes.List(); len(got) != 0 {
			t.Errorf("store holds %d sandboxes", len(got))
		}
		if n := e.s.sandboxNames.Len(); n != 0 {
			t.Errorf("%d names still reserved", n)
		}
		if left := e.files(t); len(left) != 0 {
			t.Errorf("files left behind: %v", left)
		}
	})

	t.Run("stop with a port mapping the plugin refuses", func(t *testing.T) {
		e := newTestEnv(t)
		p := e.withFakeCNI(t)
		// ADD accepted it (no validation in this path); DEL refuses the
		// capability arguments.
		bad := &runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 0, HostPort: 8081}
		id := e.runPod(t, podWithPorts("web", bad))
		if got := p.Allocations(t); len(got) != 1 || got[0] != id {
			t.Fatalf("allocations %v, want the pod's", got)
		}
		p.Set(t, cnitest.FailDelCaps, true)
		if err := e.stopPod(id); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if got := p.Allocations(t); len(got) != 0 {
			t.Errorf("address not released by StopPodSandbox: %v", got)
		}
		if err := e.removePod(id); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
	})

	t.Run("DEL fails altogether: kept NOTREADY, released by the next stop", func(t *testing.T) {
		e := newTestEnv(t)
		p := e.withFakeCNI(t)
		p.Set(t, cnitest.FailAddCaps, true)
		p.Set(t, cnitest.FailDel, true)

		_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podWithPorts("web", http)})
		if err == nil {
			t.Fatal("RunPodSandbox succeeded although ADD failed")
		}
		sbs := e.s.sandboxes.List()
		if len(sbs) != 1 {
			t.Fatalf("store holds %d sandboxes, want the one whose address could not be released", len(sbs))
		}
		sb := sbs[0]
		if st, _ := sb.State(); st != sandbox.StateNotReady {
			t.Errorf("kept sandbox is %v, want NOTREADY", criSandboxState(st))
		}
		if got := p.Allocations(t); len(got) != 1 || got[0] != sb.ID {
			t.Fatalf("allocations %v, want the kept sandbox's", got)
		}
		if md := e.persistedSandbox(t, sb.ID); md.Phase != sandbox.PhaseCreating || md.NetworkTornDown {
			t.Errorf("persisted phase %q torn down %v, want half-made with its network", md.Phase, md.NetworkTornDown)
		}

		// Still failing: stop reports it, nothing is released or removed.
		if err := e.stopPod(sb.ID); err == nil {
			t.Fatal("StopPodSandbox succeeded although DEL fails")
		}
		if err := e.removePod(sb.ID); err == nil {
			t.Fatal("RemovePodSandbox succeeded although DEL fails")
		}
		if got := p.Allocations(t); len(got) != 1 {
			t.Fatalf("allocations %v", got)
		}

		p.Set(t, cnitest.FailDel, false)
		if err := e.stopPod(sb.ID); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if got := p.Allocations(t); len(got) != 0 {
			t.Errorf("address not released by StopPodSandbox: %v", got)
		}
		if err := e.removePod(sb.ID); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		if n := e.s.sandboxNames.Len(); n != 0 {
			t.Errorf("%d names still reserved", n)
		}
		if left := e.files(t); len(left) != 0 {
			t.Errorf("files left behind: %v", left)
		}
	})

	t.Run("no configuration: nothing to tear down, nothing kept", func(t *testing.T) {
		e := newTestEnv(t)
		p := cnitest.Install(t)
		m, err := cni.New(t.TempDir(), []string{p.BinDir}, cni.WithLoopbackPlugin())
		if err != nil {
			t.Fatal(err)
		}
		e.s.deps.Network = m
		_, err = e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podWithPorts("web", http)})
		if !errors.Is(err, cni.ErrNetworkNotReady) {
			t.Fatalf("err = %v, want network not ready", err)
		}
		if got := e.s.sandboxes.List(); len(got) != 0 {
			t.Errorf("store holds %d sandboxes", len(got))
		}
		if n := e.s.sandboxNames.Len(); n != 0 {
			t.Errorf("%d names still reserved", n)
		}
		if left := e.files(t); len(left) != 0 {
			t.Errorf("files left behind: %v", left)
		}
	})
}

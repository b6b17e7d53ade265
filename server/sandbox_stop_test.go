package server

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

func (e *testEnv) stopPod(id string) error {
	_, err := e.s.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	return err
}

func (e *testEnv) removePod(id string) error {
	_, err := e.s.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	return err
}

// persistedSandbox is the sandbox metadata last written to containerd.
func (e *testEnv) persistedSandbox(t *testing.T, id string) sandbox.Metadata {
	t.Helper()
	var md sandbox.Metadata
	if c := e.ctrd.Lookup(id); c == nil || !c.Extension(t, sandbox.MetadataExtension, &md) {
		t.Fatalf("no persisted metadata for %s", id)
	}
	return md
}

func TestStopPodSandbox(t *testing.T) {
	e := newTestEnv(t)
	events, cancel := e.s.events.subscribe()
	defer cancel()
	id := e.runPod(t, podConfig("web"))
	drainEvents(events)
	sb, _ := e.s.sandboxes.Get(id)
	nsPath := sb.GetMetadata().NetNSPath

	if err := e.stopPod(id); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if st, _ := sb.State(); st != sandbox.StateNotReady {
		t.Errorf("state = %v, want not ready", st)
	}
	_, _, tasks := e.ctrd.Lookup(id).State()
	if len(tasks) != 1 {
		t.Fatalf("%d pause tasks", len(tasks))
	}
	if kills := tasks[0].Killed(); len(kills) != 1 || kills[0] != syscall.SIGKILL {
		t.Errorf("pause task kills = %v, want one SIGKILL", kills)
	}
	if _, deleted, _ := tasks[0].State(); !deleted {
		t.Error("pause task not deleted")
	}
	setups, removes := e.net.Calls()
	if len(removes) != 1 || removes[0] != setups[0] {
		t.Errorf("CNI DELs %+v, want one like the ADD %+v", removes, setups[0])
	}
	if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns not removed: %v", err)
	}
	if !sb.GetMetadata().NetworkTornDown || !e.persistedSandbox(t, id).NetworkTornDown {
		t.Error("NetworkTornDown not recorded")
	}
	if got := e.host.MountedShm(); len(got) != 0 {
		t.Errorf("shm still mounted: %v", got)
	}
	if got := drainEvents(events); len(got) != 1 || got[0] != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
		t.Errorf("events = %v", got)
	}

	// Idempotent: a second stop does nothing more.
	if err := e.stopPod(id); err != nil {
		t.Fatalf("second StopPodSandbox: %v", err)
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("second stop ran CNI DEL again: %+v", removes)
	}
	// The sandbox stays until removed.
	if _, err := e.s.sandboxes.Get(id); err != nil {
		t.Errorf("stopped sandbox left the store: %v", err)
	}
}

func TestStopPodSandboxMissingIsNoop(t *testing.T) {
	e := newTestEnv(t)
	if err := e.stopPod("0123456789abcdef"); err != nil {
		t.Fatalf("StopPodSandbox of a missing sandbox: %v", err)
	}
	if err := e.removePod("0123456789abcdef"); err != nil {
		t.Fatalf("RemovePodSandbox of a missing sandbox: %v", err)
	}
}

func TestStopPodSandboxStopsContainers(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	ctr := e.createContainer(t, pod, ctrConfig("app"))
	e.startContainer(t, ctr)

	if err := e.stopPod(pod); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	c, _ := e.s.containers.Get(ctr)
	if st := c.Status(); st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("container state %v exit code %d, want exited 137", st.State(), st.ExitCode)
	}
}

func TestRemovePodSandbox(t *testing.T) {
	e := newTestEnv(t)
	events, cancel := e.s.events.subscribe()
	defer cancel()
	id := e.runPod(t, podConfig("web"))
	ctr := e.createContainer(t, id, ctrConfig("app"))
	drainEvents(events)

	// Not stopped first: RemovePodSandbox stops it.
	if err := e.removePod(id); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if _, err := e.s.sandboxes.Get(id); err == nil {
		t.Error("sandbox still in the store")
	}
	if _, err := e.s.containers.Get(ctr); err == nil {
		t.Error("container of the sandbox still in the store")
	}
	if n, m := e.s.sandboxNames.Len(), e.s.containerNames.Len(); n != 0 || m != 0 {
		t.Errorf("names still reserved: %d sandbox, %d container", n, m)
	}
	for _, cid := range []string{id, ctr} {
		if deleted, cleanup, _ := e.ctrd.Lookup(cid).State(); !deleted || !cleanup {
			t.Errorf("containerd container %s: deleted %v with snapshot cleanup %v", cid, deleted, cleanup)
		}
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("CNI DELs %+v, want one", removes)
	}
	if left := e.files(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
	// No container of the pod mounted an image volume: nothing to release
	// (sandbox.TestRemoveReleasesImageVolumesOnlyWhenMaybeMounted).
	if got := e.ctrd.LeaseDeletes; len(got) != 0 {
		t.Errorf("lease deletes %v, want none", got)
	}
	got := drainEvents(events)
	if len(got) == 0 || got[len(got)-1] != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT {
		t.Errorf("events = %v, want the sandbox's DELETED last", got)
	}

	// The name is free again.
	e.runPod(t, podConfig("web"))
}

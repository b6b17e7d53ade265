package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// fakeImageVolumes records the release of a pod's image volumes.
type fakeImageVolumes struct {
	mu       sync.Mutex
	unmounts []string
	removes  []string
	err      error
}

func (f *fakeImageVolumes) Unmount(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unmounts = append(f.unmounts, id)
	return f.err
}

func (f *fakeImageVolumes) Remove(_ context.Context, id, snapshotter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes = append(f.removes, id+"@"+snapshotter)
}

// newLifecycleEnv is a run env whose pause tasks deliver their exit to the
// controller when killed, as the event monitor would.
func newLifecycleEnv(t *testing.T) (*runEnv, *fakeImageVolumes) {
	t.Helper()
	e := newRunEnv(t)
	iv := &fakeImageVolumes{}
	e.o.ImageVolumes = iv
	e.c = NewController(e.o)
	e.ctrd.Configure = func(c *backendtest.Container) {
		c.OnKill = func() {
			if sb, err := e.o.Store.Get(c.ID()); err == nil {
				e.c.HandleExit(context.Background(), sb, 137, time.Unix(1700000001, 0))
			}
		}
	}
	return e, iv
}

func (e *runEnv) run(t *testing.T, name string) *Sandbox {
	t.Helper()
	id, err := e.c.Run(context.Background(), testPod(name), "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sb, err := e.o.Store.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	e.takeEvents()
	return sb
}

// exitCodeOf is the recorded exit code of the pause process.
func exitCodeOf(sb *Sandbox) uint32 {
	sb.mu.RLock()
	defer sb.mu.RUnlock()
	return sb.exitCode
}

// persisted is the sandbox metadata last written to containerd.
func (e *runEnv) persisted(t *testing.T, id string) Metadata {
	t.Helper()
	var md Metadata
	if c := e.ctrd.Lookup(id); c == nil || !c.Extension(t, MetadataExtension, &md) {
		t.Fatalf("no persisted metadata for %s", id)
	}
	return md
}

func TestControllerStop(t *testing.T) {
	e, iv := newLifecycleEnv(t)
	sb := e.run(t, "web")
	nsPath := sb.GetMetadata().NetNSPath

	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st, _ := sb.State(); st != StateNotReady || exitCodeOf(sb) != 137 {
		t.Errorf("state = %v exit code %d, want not ready 137", st, exitCodeOf(sb))
	}
	_, _, tasks := e.ctrd.Lookup(sb.ID).State()
	if len(tasks) != 1 {
		t.Fatalf("%d pause tasks", len(tasks))
	}
	if kills := tasks[0].Killed(); len(kills) != 1 || kills[0] != syscall.SIGKILL {
		t.Errorf("pause task kills = %v, want one SIGKILL", kills)
	}
	// To the pause alone, as the built-in CRI does: it is the init of the
	// pod's PID namespace (the kernel kills the rest with it), or alone in
	// its cgroup with the host's; a kill of all froze and thawed its cgroup.
	tasks[0].Mu.Lock()
	killAll := append([]bool(nil), tasks[0].KillAll...)
	tasks[0].Mu.Unlock()
	if len(killAll) != 1 || killAll[0] {
		t.Errorf("pause task kills to every process %v, want one to the pause alone", killAll)
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
	if !sb.GetMetadata().NetworkTornDown || !e.persisted(t, sb.ID).NetworkTornDown {
		t.Error("NetworkTornDown not recorded")
	}
	if got := e.host.MountedShm(); len(got) != 0 {
		t.Errorf("shm still mounted: %v", got)
	}
	if got := fmt.Sprint(iv.unmounts); got != "["+sb.ID+"]" {
		t.Errorf("image volume unmounts = %s, want the sandbox's", got)
	}
	if got := fmt.Sprint(e.takeEvents()); got != "[CONTAINER_STOPPED_EVENT]" {
		t.Errorf("events = %s", got)
	}

	// Idempotent: a second stop does not tear the network down again.
	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, removes := e.net.Calls(); len(removes) != 1 {
		t.Errorf("second stop ran CNI DEL again: %+v", removes)
	}
	if got := e.takeEvents(); len(got) != 0 {
		t.Errorf("second stop emitted %v", got)
	}
	// The sandbox stays until removed.
	if _, err := e.o.Store.Get(sb.ID); err != nil {
		t.Errorf("stopped sandbox left the store: %v", err)
	}
}

func TestControllerStopRetriesNetworkTeardown(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	nsPath := sb.GetMetadata().NetNSPath
	e.net.RemoveErrs = 1

	if err := e.c.Stop(context.Background(), sb); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("err = %v, want the CNI DEL failure", err)
	}
	if sb.GetMetadata().NetworkTornDown || e.persisted(t, sb.ID).NetworkTornDown {
		t.Error("NetworkTornDown set although CNI DEL failed")
	}
	if _, err := os.Stat(nsPath); err != nil {
		t.Errorf("netns removed before CNI DEL succeeded: %v", err)
	}

	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("retried Stop: %v", err)
	}
	setups, removes := e.net.Calls()
	if len(removes) != 2 || removes[0] != setups[0] || removes[1] != setups[0] {
		t.Errorf("CNI DELs %+v, want two like the ADD %+v", removes, setups[0])
	}
	if !sb.GetMetadata().NetworkTornDown || !e.persisted(t, sb.ID).NetworkTornDown {
		t.Error("NetworkTornDown not recorded after the retry")
	}
	if _, err := os.Stat(nsPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns not removed: %v", err)
	}
}

func TestControllerStopNetNSGone(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	// The namespace vanished (e.g. a reboot): DEL still runs, without a path.
	if err := os.Remove(sb.GetMetadata().NetNSPath); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, removes := e.net.Calls(); len(removes) != 1 || removes[0].ID != sb.ID || removes[0].Path != "" {
		t.Errorf("CNI DELs %+v, want one for %s without a netns path", removes, sb.ID)
	}
}

// TestControllerStopImageVolumeFailure: an image volume that cannot be
// unmounted fails the stop after the network is down, keeps the shm for
// the retry, and the retry finishes the job.
func TestControllerStopImageVolumeFailure(t *testing.T) {
	e, iv := newLifecycleEnv(t)
	sb := e.run(t, "web")
	iv.err = backendtest.ErrInjected
	if err := e.c.Stop(context.Background(), sb); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("err = %v, want the unmount failure", err)
	}
	if !sb.GetMetadata().NetworkTornDown {
		t.Error("network not torn down before the image volumes")
	}
	if got := e.host.MountedShm(); len(got) != 1 {
		t.Errorf("shm mounts = %v, want it kept for the retry", got)
	}
	iv.err = nil
	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("retried Stop: %v", err)
	}
	if got := e.host.MountedShm(); len(got) != 0 {
		t.Errorf("shm still mounted: %v", got)
	}
}

func TestControllerHandleExit(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	at := time.Unix(1700000042, 0)
	e.c.HandleExit(context.Background(), sb, 3, at)
	if st, _ := sb.State(); st != StateNotReady || exitCodeOf(sb) != 3 {
		t.Errorf("state = %v exit code %d, want not ready 3", st, exitCodeOf(sb))
	}
	_, _, tasks := e.ctrd.Lookup(sb.ID).State()
	// One call: nothing but the exited pause runs in the pause container.
	if _, deleted, kill := tasks[0].State(); !deleted || kill {
		t.Errorf("pause task deleted %v with process kill %v, want deleted without", deleted, kill)
	}
	if got := fmt.Sprint(e.takeEvents()); got != "[CONTAINER_STOPPED_EVENT]" {
		t.Errorf("events = %s", got)
	}
	// A second exit (e.g. the reconciliation after the event) changes nothing.
	e.c.HandleExit(context.Background(), sb, 9, at.Add(time.Second))
	if code := exitCodeOf(sb); code != 3 {
		t.Errorf("exit code %d after a second exit, want 3", code)
	}
	if got := e.takeEvents(); len(got) != 0 {
		t.Errorf("second exit emitted %v", got)
	}
}

package sandbox

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// recoveryEnv is a lifecycle env whose containerd, as recovery sees it, is
// f; reaped records the IDs whose forgotten shims were reaped.
type recoveryEnv struct {
	*runEnv
	f *backendtest.State

	mu     sync.Mutex
	reaped []string
}

func newRecoveryEnv(t *testing.T) *recoveryEnv {
	t.Helper()
	e, _ := newLifecycleEnv(t)
	r := &recoveryEnv{runEnv: e, f: backendtest.NewState(t)}
	e.o.Deps.Containerd = backendtest.CtrdWithState{Ctrd: e.ctrd, State: r.f}
	e.o.ReapShims = func(id, _ string) {
		r.mu.Lock()
		r.reaped = append(r.reaped, id)
		r.mu.Unlock()
	}
	e.c = NewController(e.o)
	return r
}

func (r *recoveryEnv) reapedShims() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reaped...)
}

// onDisk makes a sandbox as RunPodSandbox leaves it (or, with phase
// PhaseCreating, as a daemon killed inside RunPodSandbox leaves it): a netns
// "mount" (a file), the pod files, and the containerd container, its
// metadata corrupt when asked.
func (r *recoveryEnv) onDisk(t *testing.T, name string, phase Phase, corrupt bool) (*backendtest.StateContainer, Metadata) {
	t.Helper()
	id := NewID()
	cfg := r.o.Config
	paths := PathsFor(cfg.RootDir, cfg.StateDir, id)
	ns, err := r.host.NewNetNS(paths.NetNSDir)
	if err != nil {
		t.Fatal(err)
	}
	pod := testPod(name)
	if err := WriteFiles(paths, pod, DefaultHostFiles); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(paths.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	md := Metadata{
		Version: 1, ID: id, Name: Name(pod.GetMetadata()), Config: pod,
		RuntimeHandler: "runc", RuntimeType: "io.containerd.runc.v2",
		NetNSPath: ns.GetPath(), IP: "10.88.0.9", CreatedAt: time.Now().UnixNano(),
		Phase: phase, ImageID: testPauseID,
	}
	spec := &oci.Spec{
		Version:     runtimespec.Version,
		Annotations: Annotations(id, pod),
		Linux: &runtimespec.Linux{Namespaces: []runtimespec.LinuxNamespace{
			{Type: runtimespec.PIDNamespace}, {Type: runtimespec.NetworkNamespace, Path: ns.GetPath()},
		}},
	}
	c := r.f.AddContainer(t, id, map[string]string{LabelKind: KindSandbox}, MetadataExtension, &md, corrupt, spec)
	return c, md
}

func (r *recoveryEnv) recover(t *testing.T) {
	t.Helper()
	if err := r.c.Recover(context.Background()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
}

func (r *recoveryEnv) state(t *testing.T, id string) State {
	t.Helper()
	sb, err := r.o.Store.Get(id)
	if err != nil {
		t.Fatalf("sandbox %s not recovered: %v", id, err)
	}
	st, _ := sb.State()
	return st
}

func TestControllerRecover(t *testing.T) {
	r := newRecoveryEnv(t)
	readyC, ready := r.onDisk(t, "ready", PhaseCreated, false)
	readyC.StartTask(100, containerd.Running, 0)
	exitedC, exited := r.onDisk(t, "exited", PhaseCreated, false)
	exitedTask := exitedC.StartTask(101, containerd.Stopped, 3)
	_, noTask := r.onDisk(t, "no-task", PhaseCreated, false)

	r.recover(t)

	if st := r.state(t, ready.ID); st != StateReady {
		t.Errorf("sandbox with a running pause task: state %v, want ready", st)
	}
	if st := r.state(t, exited.ID); st != StateNotReady {
		t.Errorf("sandbox with an exited pause task: state %v, want not ready", st)
	}
	sb, _ := r.o.Store.Get(exited.ID)
	if code := exitCodeOf(sb); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if deleted, _ := exitedTask.State(); !deleted {
		t.Error("exited pause task not deleted")
	}
	if st := r.state(t, noTask.ID); st != StateNotReady {
		t.Errorf("sandbox without a pause task: state %v, want not ready", st)
	}
	if n := r.o.Names.Len(); n != 3 {
		t.Errorf("%d names reserved, want 3", n)
	}
	// Recovered sandboxes are stopped and removed as usual.
	sbNoTask, _ := r.o.Store.Get(noTask.ID)
	if err := r.c.Remove(context.Background(), sbNoTask); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !r.f.Lookup(noTask.ID).IsDeleted() {
		t.Error("containerd container of the removed sandbox not deleted")
	}
}

// TestRegressionUnreadableSandboxMetadataDestroyed: a sandbox whose
// metadata extension could not be decoded was skipped by recovery, and its
// netns and pod files were then removed as orphans (the in-memory store did
// not know it), leaking its IP and hiding it from kubelet. It must be kept,
// NOTREADY, rebuilt from what containerd has (spec annotations, netns path),
// so that StopPodSandbox tears the network down and RemovePodSandbox removes
// it. (Its pause process is reaped: a NOTREADY sandbox runs none.)
func TestRegressionUnreadableSandboxMetadataDestroyed(t *testing.T) {
	r := newRecoveryEnv(t)
	sbc, md := r.onDisk(t, "corrupt", PhaseCreated, true)
	pause := sbc.StartTask(100, containerd.Running, 0)
	cfg := r.o.Config
	paths := PathsFor(cfg.RootDir, cfg.StateDir, md.ID)
	// A sandbox directory that containerd does not know is still an orphan.
	orphan := PathsFor(cfg.RootDir, cfg.StateDir, NewID())
	if err := os.MkdirAll(orphan.RootDir, 0o700); err != nil {
		t.Fatal(err)
	}

	r.recover(t)

	for _, p := range []string{md.NetNSPath, paths.HostnamePath(), paths.StateDir} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("recovery removed %s of the unreadable sandbox: %v", p, err)
		}
	}
	if _, err := os.Stat(orphan.RootDir); !os.IsNotExist(err) {
		t.Errorf("orphan sandbox dir %s kept (err %v)", orphan.RootDir, err)
	}
	if sbc.IsDeleted() {
		t.Error("recovery deleted the unreadable sandbox's containerd container")
	}
	if deleted, _ := pause.State(); !deleted {
		t.Error("pause task of the unreadable sandbox left running")
	}
	sb, err := r.o.Store.Get(md.ID)
	if err != nil {
		t.Fatalf("unreadable sandbox %s not kept: %v", md.ID, err)
	}
	if st, _ := sb.State(); st != StateNotReady {
		t.Errorf("unreadable sandbox state = %v, want NOTREADY", st)
	}
	if got, want := sb.Config.GetMetadata().GetName(), md.Config.GetMetadata().GetName(); got != want {
		t.Errorf("recovered pod name = %q, want %q (from the spec annotations)", got, want)
	}

	// kubelet stops and removes it: CNI DEL on its netns, then nothing left.
	if err := r.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, removes := r.net.Calls(); len(removes) != 1 || removes[0].Path != md.NetNSPath {
		t.Errorf("CNI DEL calls = %+v, want one on %s", removes, md.NetNSPath)
	}
	if err := r.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !sbc.IsDeleted() {
		t.Error("containerd container of the removed sandbox not deleted")
	}
	for _, p := range []string{paths.NetNSDir, paths.RootDir, paths.StateDir} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after Remove (err %v)", p, err)
		}
	}
}

// TestRegressionHalfMadeSandboxPauseLeftRunning: a sandbox that recovery
// kept NOTREADY without cleaning it up (its metadata unreadable, or a
// half-made one this root has no files for) kept its pause process, and the
// shim serving it, running: nothing stops a NOTREADY sandbox's pause task
// (Stop only kills a READY one's). It is now reaped, while the record, the
// netns and the files stay for kubelet to remove.
func TestRegressionHalfMadeSandboxPauseLeftRunning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
		noFiles bool
	}{
		{name: "unreadable metadata", corrupt: true},
		{name: "half-made without files under this root", noFiles: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecoveryEnv(t)
			phase := PhaseCreated
			if tc.noFiles {
				phase = PhaseCreating
			}
			sbc, md := r.onDisk(t, "pod", phase, tc.corrupt)
			pause := sbc.StartTask(100, containerd.Running, 0)
			paths := PathsFor(r.o.Config.RootDir, r.o.Config.StateDir, md.ID)
			if tc.noFiles {
				_ = os.RemoveAll(paths.RootDir)
			}

			r.recover(t)

			if deleted, _ := pause.State(); !deleted {
				t.Error("pause task left running")
			}
			if sbc.IsDeleted() {
				t.Error("containerd container deleted")
			}
			if _, err := os.Stat(md.NetNSPath); err != nil {
				t.Errorf("netns removed: %v", err)
			}
			if st := r.state(t, md.ID); st != StateNotReady {
				t.Errorf("state %v, want NOTREADY", st)
			}
			if _, removes := r.net.Calls(); len(removes) != 0 {
				t.Errorf("CNI DEL ran at recovery: %+v", removes)
			}
		})
	}
}

// TestRegressionHalfMadeSandboxShimNotReaped: recovery cleaned up a
// sandbox left half-made by a daemon killed inside RunPodSandbox but did
// not look for a shim containerd had lost (containerd killed while the
// pause task was being made comes back without the task, its shim and
// pause process still running). Remove reaped such shims, recovery did not.
func TestRegressionHalfMadeSandboxShimNotReaped(t *testing.T) {
	r := newRecoveryEnv(t)
	sbc, md := r.onDisk(t, "half", PhaseCreating, false)
	pause := sbc.StartTask(100, containerd.Running, 0)

	r.recover(t)

	if deleted, _ := pause.State(); !deleted {
		t.Error("pause task of the half-made sandbox left running")
	}
	if !sbc.IsDeleted() {
		t.Error("containerd container of the half-made sandbox not deleted")
	}
	if got := r.reapedShims(); len(got) != 1 || got[0] != md.ID {
		t.Errorf("shims reaped for %v, want the half-made sandbox's", got)
	}
	if _, removes := r.net.Calls(); len(removes) != 1 || removes[0].ID != md.ID {
		t.Errorf("CNI DELs %+v, want one for %s", removes, md.ID)
	}
	if _, err := r.o.Store.Get(md.ID); err == nil {
		t.Error("cleaned-up half-made sandbox is in the store")
	}
	if left := r.podFiles(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

// TestControllerRecoverKeepsHalfMadeWhenTeardownFails: a half-made sandbox
// whose CNI DEL fails at recovery is kept NOTREADY with its netns (pause
// reaped), and Stop/Remove finish the job.
func TestControllerRecoverKeepsHalfMadeWhenTeardownFails(t *testing.T) {
	r := newRecoveryEnv(t)
	sbc, md := r.onDisk(t, "half", PhaseCreating, false)
	pause := sbc.StartTask(100, containerd.Running, 0)
	r.net.RemoveErrs = 100 // every fallback of the DEL fails
	r.recover(t)
	if deleted, _ := pause.State(); !deleted {
		t.Error("pause task left running")
	}
	if st := r.state(t, md.ID); st != StateNotReady {
		t.Errorf("state %v, want NOTREADY", st)
	}
	if _, err := os.Stat(md.NetNSPath); err != nil {
		t.Errorf("netns removed although CNI DEL failed: %v", err)
	}
	r.net.RemoveErrs = 0
	sb, _ := r.o.Store.Get(md.ID)
	if err := r.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if !sbc.IsDeleted() {
		t.Error("containerd container not deleted")
	}
	if left := r.podFiles(t); len(left) != 0 {
		t.Errorf("files left behind: %v", left)
	}
}

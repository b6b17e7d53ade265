package container

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// newRecoverEnv is a ctlEnv whose containerd, as recovery sees it, is f.
func newRecoverEnv(t *testing.T) (*ctlEnv, *backendtest.State) {
	t.Helper()
	e := newCtlEnv(t)
	f := backendtest.NewState(t)
	e.o.Deps.Containerd = backendtest.CtrdWithState{Ctrd: e.ctrd, State: f}
	e.c = NewController(e.o)
	return e, f
}

// containerOnDisk makes a container of the test pod as Create and Start
// leave it; status nil means no status file.
func (e *ctlEnv) containerOnDisk(t *testing.T, f *backendtest.State, name string, corruptMD bool, status *Status) (*backendtest.StateContainer, Metadata) {
	t.Helper()
	id := sandbox.NewID()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testBusybox},
	}
	sbCfg := testPodConfig()
	md := Metadata{
		Version: 1, ID: id, Name: Name(cfg.GetMetadata(), sbCfg.GetMetadata()), SandboxID: testPodID,
		Config: cfg, ImageRef: testBusyboxID, ImageName: testBusybox,
		LogPath:   filepath.Join(t.TempDir(), name+".log"),
		CreatedAt: time.Now().UnixNano(),
	}
	dir := filepath.Join(e.root, "containers", id)
	if err := os.MkdirAll(filepath.Join(e.state, "containers", id, "io"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		c := New(md, dir, Status{})
		if err := c.Update(func(st *Status) error { *st = *status; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	spec := &oci.Spec{Version: runtimespec.Version, Annotations: Annotations(id, name, testPodID, sbCfg, testBusybox)}
	c := f.AddContainer(t, id, map[string]string{sandbox.LabelKind: sandbox.KindContainer, sandbox.LabelSandboxID: testPodID},
		MetadataExtension, &md, corruptMD, spec)
	return c, md
}

func runningStatus() *Status {
	now := time.Now().UnixNano()
	return &Status{Pid: 4242, CreatedAt: now, StartedAt: now}
}

// TestRegressionUnreadableContainerRecordKilled: a container whose status
// file was unreadable (or missing) was taken for one that CreateContainer
// never finished: its running task was killed and the container deleted. A
// container whose metadata could not be decoded was dropped and its files
// removed. Such containers are now recovered from containerd (task state
// and exit status) or kept UNKNOWN; only a container with no status file
// and no task is half-made. (The server's test of the same name also stops
// and removes what recovery kept.)
func TestRegressionUnreadableContainerRecordKilled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		corruptMD bool
		status    string // "ok", "missing" or "corrupt"
		task      string // "running", "exited" (code 3) or "" (none)
		wantState runtimeapi.ContainerState
		wantCode  int32
		wantGone  bool
		noDir     bool
	}{
		{name: "corrupt status, running task", status: "corrupt", task: "running", wantState: runtimeapi.ContainerState_CONTAINER_RUNNING},
		{name: "missing status, running task", status: "missing", task: "running", wantState: runtimeapi.ContainerState_CONTAINER_RUNNING},
		{name: "corrupt status, exited task", status: "corrupt", task: "exited", wantState: runtimeapi.ContainerState_CONTAINER_EXITED, wantCode: 3},
		{name: "corrupt status, no task", status: "corrupt", wantState: runtimeapi.ContainerState_CONTAINER_UNKNOWN},
		{name: "corrupt metadata, running task", corruptMD: true, status: "ok", task: "running", wantState: runtimeapi.ContainerState_CONTAINER_UNKNOWN},
		{name: "corrupt metadata and status, no task", corruptMD: true, status: "corrupt", wantState: runtimeapi.ContainerState_CONTAINER_UNKNOWN},
		{name: "half-made: no status, no task", status: "missing", wantGone: true},
		{name: "no directory under this root, no task", status: "missing", noDir: true, wantState: runtimeapi.ContainerState_CONTAINER_UNKNOWN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRecoverEnv(t)
			var st *Status
			if tc.status != "missing" {
				st = runningStatus()
			}
			cc, md := e.containerOnDisk(t, f, "app", tc.corruptMD, st)
			if tc.status == "corrupt" {
				if err := os.WriteFile(filepath.Join(e.root, "containers", md.ID, "status"), []byte(`{"pid": 42, "startedAt": `), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.noDir {
				_ = os.RemoveAll(filepath.Join(e.root, "containers", md.ID))
			}
			var task *backendtest.StateTask
			switch tc.task {
			case "running":
				task = cc.StartTask(4242, containerd.Running, 0)
			case "exited":
				task = cc.StartTask(4242, containerd.Stopped, 3)
			}

			if err := e.c.Recover(context.Background()); err != nil {
				t.Fatalf("Recover: %v", err)
			}

			got, err := e.o.Store.Get(md.ID)
			if tc.wantGone {
				if !cc.IsDeleted() {
					t.Error("half-made container not removed")
				}
				if err == nil {
					t.Error("half-made container in the store")
				}
				return
			}
			if err != nil {
				t.Fatalf("container not recovered: %v", err)
			}
			if cc.IsDeleted() {
				t.Fatal("recovery deleted the containerd container")
			}
			if task != nil {
				deleted, kills := task.State()
				if len(kills) > 0 {
					t.Errorf("recovery killed the task: %v", kills)
				}
				if tc.task == "running" && deleted {
					t.Error("recovery deleted the running task")
				}
			}
			for _, d := range []string{filepath.Join(e.root, "containers", md.ID), filepath.Join(e.state, "containers", md.ID)} {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("recovery removed %s: %v", d, err)
				}
			}
			s := got.Status()
			if s.State() != tc.wantState {
				t.Errorf("state = %v, want %v", s.State(), tc.wantState)
			}
			if tc.wantState == runtimeapi.ContainerState_CONTAINER_EXITED && s.ExitCode != tc.wantCode {
				t.Errorf("exit code = %d, want %d", s.ExitCode, tc.wantCode)
			}
			if got.Config.GetMetadata().GetName() != "app" {
				t.Errorf("container name = %q, want app", got.Config.GetMetadata().GetName())
			}
			if io := got.IO(); io != nil {
				io.Close()
			}
		})
	}
}

// TestRegressionStartedTaskKilledAfterDaemonDiedInStart: a daemon killed
// inside StartContainer, after the task started but before the start was
// checkpointed, left a CREATED container with a running task; recovery
// killed that task although its process ran. A started task is now
// adopted; only a task that never started is deleted.
func TestRegressionStartedTaskKilledAfterDaemonDiedInStart(t *testing.T) {
	for _, tc := range []struct {
		name        string
		task        containerd.ProcessStatus
		code        uint32
		wantState   runtimeapi.ContainerState
		wantCode    int32
		wantDeleted bool
	}{
		{name: "running task is adopted", task: containerd.Running, wantState: runtimeapi.ContainerState_CONTAINER_RUNNING},
		{name: "exited task reports its code", task: containerd.Stopped, code: 1, wantState: runtimeapi.ContainerState_CONTAINER_EXITED, wantCode: 1, wantDeleted: true},
		{name: "never started task is deleted", task: containerd.Created, wantState: runtimeapi.ContainerState_CONTAINER_CREATED, wantDeleted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRecoverEnv(t)
			cc, md := e.containerOnDisk(t, f, "app", false, &Status{CreatedAt: time.Now().UnixNano()})
			task := cc.StartTask(4242, tc.task, tc.code)
			if err := e.c.Recover(context.Background()); err != nil {
				t.Fatalf("Recover: %v", err)
			}
			got, err := e.o.Store.Get(md.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st := got.Status(); st.State() != tc.wantState || st.ExitCode != tc.wantCode {
				t.Errorf("recovered %v code %d, want %v %d", st.State(), st.ExitCode, tc.wantState, tc.wantCode)
			}
			deleted, kills := task.State()
			if tc.wantDeleted != deleted {
				t.Errorf("task deleted = %v, want %v", deleted, tc.wantDeleted)
			}
			if len(kills) > 0 {
				t.Errorf("recovery killed the task: %v", kills)
			}
			if io := got.IO(); io != nil {
				io.Close()
			}
		})
	}
}

// TestRecoverRemovesOrphanDirs: directories of container IDs containerd
// does not have are removed; those it has are kept.
func TestRecoverRemovesOrphanDirs(t *testing.T) {
	e, f := newRecoverEnv(t)
	_, md := e.containerOnDisk(t, f, "app", false, &Status{CreatedAt: time.Now().UnixNano()})
	orphan := sandbox.NewID()
	for _, base := range []string{e.root, e.state} {
		if err := os.MkdirAll(filepath.Join(base, "containers", orphan), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.c.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, base := range []string{e.root, e.state} {
		if _, err := os.Stat(filepath.Join(base, "containers", orphan)); !os.IsNotExist(err) {
			t.Errorf("orphan dir under %s: %v", base, err)
		}
		if _, err := os.Stat(filepath.Join(base, "containers", md.ID)); err != nil {
			t.Errorf("dir of a known container under %s: %v", base, err)
		}
	}
}

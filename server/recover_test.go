package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// newRecoveryEnv is a testEnv whose containerd, as recovery sees it, is f.
func newRecoveryEnv(t *testing.T) (*testEnv, *backendtest.State) {
	t.Helper()
	e := newTestEnv(t)
	f := backendtest.NewState(t)
	e.s.deps.Containerd = backendtest.CtrdWithState{Ctrd: e.ctrd, State: f}
	return e, f
}

// startState runs what New runs after connecting: recovery and the event
// monitor; both end with the test.
func startState(t *testing.T, s *Service) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := s.syncState(ctx); err != nil {
		t.Fatalf("recovery: %v", err)
	}
	t.Cleanup(func() { stopBackground(s) })
}

func runningStatus() *container.Status {
	now := time.Now().UnixNano()
	return &container.Status{Pid: 4242, CreatedAt: now, StartedAt: now}
}

func containerState(t *testing.T, s *Service, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return resp.GetStatus()
}

func sandboxState(t *testing.T, s *Service, id string) runtimeapi.PodSandboxState {
	t.Helper()
	resp, err := s.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	return resp.GetStatus().GetState()
}

// TestRegressionExitLostBeforeSubscribe: a container (and a pause process)
// that exits after recovery looked at its task, before the task event
// subscription exists, stayed RUNNING (READY) forever: the exit event went
// to nobody and the first subscription did not reconcile.
func TestRegressionExitLostBeforeSubscribe(t *testing.T) {
	e, f := newRecoveryEnv(t)
	sbc, sbmd := e.fakeSandboxOnDisk(t, f, "exit-race", false)
	pause := sbc.StartTask(100, containerd.Running, 0)
	cc, cmd := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", false, runningStatus())
	task := cc.StartTask(4242, containerd.Running, 0)
	code, pauseCode := uint32(7), uint32(137)
	task.ExitAfterStatus = &code
	pause.ExitAfterStatus = &pauseCode

	startState(t, e.s)

	backendtest.WaitFor(t, "the container exit to be recorded", func() bool {
		return containerState(t, e.s, cmd.ID).GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if st := containerState(t, e.s, cmd.ID); st.GetExitCode() != 7 || st.GetReason() != "Error" {
		t.Errorf("container exit = %d %q, want 7 Error", st.GetExitCode(), st.GetReason())
	}
	backendtest.WaitFor(t, "the pause exit to be recorded", func() bool {
		return sandboxState(t, e.s, sbmd.ID) == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
}

// TestRegressionUnreadableContainerRecordKilled: a container whose status
// file was unreadable (or missing) was taken for one that CreateContainer
// never finished: its running task was killed and the container deleted. A
// container whose metadata could not be decoded was dropped and its files
// removed. Such containers are now recovered from containerd (task state
// and exit status) or kept UNKNOWN; only a container with no status file
// and no task is half-made.
func TestRegressionUnreadableContainerRecordKilled(t *testing.T) {
	for _, tc := range []struct {
		name string
		// corruptMD corrupts the metadata extension.
		corruptMD bool
		// status: "ok", "missing" or "corrupt".
		status string
		// task: "running", "exited" (code 3) or "" (none).
		task      string
		wantState runtimeapi.ContainerState
		wantCode  int32
		// wantGone: removed as half-made.
		wantGone bool
		// noDir: the container has no directory under this root (another
		// daemon's, or a lost root).
		noDir bool
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
			e, f := newRecoveryEnv(t)
			sbc, sbmd := e.fakeSandboxOnDisk(t, f, "pod", false)
			sbc.StartTask(100, containerd.Running, 0)
			var st *container.Status
			if tc.status != "missing" {
				st = runningStatus()
			}
			cc, md := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", tc.corruptMD, st)
			statusPath := filepath.Join(e.root, "containers", md.ID, "status")
			if tc.status == "corrupt" {
				if err := os.WriteFile(statusPath, []byte(`{"pid": 42, "startedAt": `), 0o600); err != nil {
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

			startState(t, e.s)

			if tc.wantGone {
				if !cc.IsDeleted() {
					t.Error("half-made container not removed")
				}
				if _, err := e.s.containers.Get(md.ID); err == nil {
					t.Error("half-made container still in the store")
				}
				return
			}
			if cc.IsDeleted() {
				t.Fatal("recovery deleted the containerd container")
			}
			if task != nil {
				if _, kills := task.State(); len(kills) > 0 {
					t.Errorf("recovery killed the task: %v", kills)
				}
			}
			if tc.task == "running" {
				if deleted, _ := task.State(); deleted {
					t.Error("recovery deleted the running task")
				}
			}
			for _, d := range []string{filepath.Join(e.root, "containers", md.ID), filepath.Join(e.state, "containers", md.ID)} {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("recovery removed %s: %v", d, err)
				}
			}
			var got *runtimeapi.ContainerStatus
			backendtest.WaitFor(t, "state "+tc.wantState.String(), func() bool {
				got = containerState(t, e.s, md.ID)
				return got.GetState() == tc.wantState
			})
			if tc.wantState == runtimeapi.ContainerState_CONTAINER_EXITED && got.GetExitCode() != tc.wantCode {
				t.Errorf("exit code = %d, want %d", got.GetExitCode(), tc.wantCode)
			}
			if got.GetMetadata().GetName() != "app" {
				t.Errorf("container name = %q, want app", got.GetMetadata().GetName())
			}
			// kubelet can stop and remove what it sees.
			if _, err := e.s.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: md.ID}); err != nil {
				t.Fatalf("StopContainer: %v", err)
			}
			if _, err := e.s.RemoveContainer(context.Background(), &runtimeapi.RemoveContainerRequest{ContainerId: md.ID}); err != nil {
				t.Fatalf("RemoveContainer: %v", err)
			}
			if !cc.IsDeleted() {
				t.Error("RemoveContainer left the containerd container")
			}
		})
	}
}

// TestRegressionRecoveryHangsOnShim: one hung shim (a task call that never
// returns) blocked recovery, hence the daemon's start, forever. Each object
// now has RecoveryTimeout; one that times out is kept (UNKNOWN container,
// NOTREADY sandbox), not deleted, and objects are recovered concurrently,
// at most RecoveryConcurrency at once.
func TestRegressionRecoveryHangsOnShim(t *testing.T) {
	e, f := newRecoveryEnv(t)
	e.s.config.RecoveryTimeout.Duration = 200 * time.Millisecond
	e.s.config.RecoveryConcurrency = 2

	hungSb, hungSbMD := e.fakeSandboxOnDisk(t, f, "hung", false)
	hungSb.Hang = true
	okSb, okSbMD := e.fakeSandboxOnDisk(t, f, "ok", false)
	okSb.StartTask(100, containerd.Running, 0)
	var hung []container.Metadata
	for _, n := range []string{"hung-1", "hung-2", "hung-3"} {
		c, md := e.fakeContainerOnDisk(t, f, okSbMD.ID, n, false, runningStatus())
		c.Hang = true
		hung = append(hung, md)
	}
	okC, okMD := e.fakeContainerOnDisk(t, f, okSbMD.ID, "fine", false, runningStatus())
	okC.StartTask(4343, containerd.Running, 0)

	done := make(chan struct{})
	go func() {
		defer close(done)
		startState(t, e.s)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("recovery did not finish: a hung shim blocks the daemon's start")
	}

	if st := sandboxState(t, e.s, hungSbMD.ID); st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("hung sandbox state = %v, want NOTREADY", st)
	}
	if st := sandboxState(t, e.s, okSbMD.ID); st != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("healthy sandbox state = %v, want READY", st)
	}
	for _, md := range hung {
		if st := containerState(t, e.s, md.ID).GetState(); st != runtimeapi.ContainerState_CONTAINER_UNKNOWN {
			t.Errorf("hung container %s state = %v, want UNKNOWN", md.Name, st)
		}
		if f.Lookup(md.ID).IsDeleted() {
			t.Errorf("hung container %s deleted", md.Name)
		}
		if _, err := os.Stat(filepath.Join(e.root, "containers", md.ID, "status")); err != nil {
			t.Errorf("status file of hung container %s: %v", md.Name, err)
		}
	}
	if st := containerState(t, e.s, okMD.ID).GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("healthy container state = %v, want RUNNING", st)
	}
	for _, p := range []string{hungSbMD.NetNSPath, sandbox.PathsFor(e.root, e.state, hungSbMD.ID).HostnamePath()} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("hung sandbox lost %s: %v", p, err)
		}
	}
	f.Mu.Lock()
	MaxInflight := f.MaxInflight
	f.Mu.Unlock()
	if MaxInflight > 2 {
		t.Errorf("%d task calls at once, want at most RecoveryConcurrency=2", MaxInflight)
	}
	if MaxInflight < 2 {
		t.Errorf("objects were recovered one at a time (max %d task calls at once), want concurrently", MaxInflight)
	}
}

// TestRegressionExitLostWhileRecordingIt: the exit handler deleted the task
// (the only other holder of the exit code), drained the output for up to 5 s
// and only then checkpointed the exit. A daemon killed in that window found
// neither task nor exit at start and reported 255 "Unknown" (found by the
// fault campaign: 2 of 20 kill -9). The code is now checkpointed as pending
// before the task is deleted, and recovery records it.
func TestRegressionExitLostWhileRecordingIt(t *testing.T) {
	t.Run("checkpointed before the task is deleted", func(t *testing.T) {
		e, f := newRecoveryEnv(t)
		sbc, sbmd := e.fakeSandboxOnDisk(t, f, "pod", false)
		sbc.StartTask(100, containerd.Running, 0)
		cc, md := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", false, runningStatus())
		task := cc.StartTask(4242, containerd.Running, 0)
		statusPath := filepath.Join(e.root, "containers", md.ID, "status")
		// Two handlers may see the exit (the event and the reconcile after
		// recovery): the first Delete tells.
		var (
			hookMu  sync.Mutex
			seen    bool
			onDisk  container.Status
			readErr error
		)
		task.Mu.Lock()
		task.OnDelete = func() {
			hookMu.Lock()
			defer hookMu.Unlock()
			if seen {
				return
			}
			seen = true
			b, err := os.ReadFile(statusPath)
			if err == nil {
				err = json.Unmarshal(b, &onDisk)
			}
			readErr = err
		}
		task.Mu.Unlock()
		startState(t, e.s)
		task.Exit(75)
		backendtest.WaitFor(t, "exited", func() bool {
			return containerState(t, e.s, md.ID).GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
		})
		hookMu.Lock()
		defer hookMu.Unlock()
		if readErr != nil {
			t.Fatalf("reading the status file when the task was deleted: %v", readErr)
		}
		if onDisk.PendingExitAt == 0 || onDisk.PendingExitCode != 75 {
			t.Errorf("status on disk when the task was deleted: pending exit at %d code %d, want the code 75 checkpointed", onDisk.PendingExitAt, onDisk.PendingExitCode)
		}
		if got := containerState(t, e.s, md.ID).GetExitCode(); got != 75 {
			t.Errorf("exit code = %d, want 75", got)
		}
	})
	t.Run("recovered when the daemon died before recording it", func(t *testing.T) {
		e, f := newRecoveryEnv(t)
		sbc, sbmd := e.fakeSandboxOnDisk(t, f, "pod", false)
		sbc.StartTask(100, containerd.Running, 0)
		st := runningStatus()
		st.PendingExitAt, st.PendingExitCode = time.Now().UnixNano(), 75
		_, md := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", false, st) // no task: deleted before the kill
		startState(t, e.s)
		got := containerState(t, e.s, md.ID)
		if got.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED || got.GetExitCode() != 75 || got.GetReason() != "Error" {
			t.Errorf("recovered %s code %d reason %q, want EXITED 75 Error", got.GetState(), got.GetExitCode(), got.GetReason())
		}
	})
}

// TestRegressionStartedTaskKilledAfterDaemonDiedInStart: a daemon killed
// inside StartContainer, after the task started but before the start was
// checkpointed, left a CREATED container with a running task; recovery
// killed that task (SIGKILL, exit 137) although its process ran (found by the
// fault campaign: "exited with 1, reported 137"). A started task is now
// adopted; only a task that never started is deleted.
func TestRegressionStartedTaskKilledAfterDaemonDiedInStart(t *testing.T) {
	for _, tc := range []struct {
		name      string
		task      containerd.ProcessStatus
		code      uint32
		wantState runtimeapi.ContainerState
		wantCode  int32
		// wantDeleted: the task is deleted (an exit recorded, or a task
		// never started removed so that the start can be retried).
		wantDeleted bool
	}{
		{name: "running task is adopted", task: containerd.Running, wantState: runtimeapi.ContainerState_CONTAINER_RUNNING},
		{name: "exited task reports its code", task: containerd.Stopped, code: 1, wantState: runtimeapi.ContainerState_CONTAINER_EXITED, wantCode: 1, wantDeleted: true},
		{name: "never started task is deleted", task: containerd.Created, wantState: runtimeapi.ContainerState_CONTAINER_CREATED, wantDeleted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRecoveryEnv(t)
			sbc, sbmd := e.fakeSandboxOnDisk(t, f, "pod", false)
			sbc.StartTask(100, containerd.Running, 0)
			cc, md := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", false, &container.Status{CreatedAt: time.Now().UnixNano()})
			task := cc.StartTask(4242, tc.task, tc.code)
			startState(t, e.s)
			var got *runtimeapi.ContainerStatus
			backendtest.WaitFor(t, "state "+tc.wantState.String(), func() bool {
				got = containerState(t, e.s, md.ID)
				return got.GetState() == tc.wantState
			})
			if got.GetExitCode() != tc.wantCode {
				t.Errorf("exit code = %d, want %d", got.GetExitCode(), tc.wantCode)
			}
			deleted, kills := task.State()
			if tc.wantDeleted != deleted {
				t.Errorf("task deleted = %v, want %v", deleted, tc.wantDeleted)
			}
			if len(kills) > 0 {
				t.Errorf("recovery killed the task: %v", kills)
			}
		})
	}
}

package container

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

func TestStart(t *testing.T) {
	e := newCtlEnv(t)
	c := e.create(t, "app")
	e.takeEvents()
	if err := e.c.Start(context.Background(), c); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st := c.Status()
	if st.State() != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Pid != 1000 || st.StartedAt != time.Unix(1700000000, 0).UnixNano() || st.Starting {
		t.Errorf("status = %+v", st)
	}
	if saved, ok, err := LoadStatus(filepath.Join(e.root, "containers", c.ID)); err != nil || !ok || saved.StartedAt != st.StartedAt || saved.Pid != 1000 {
		t.Errorf("checkpointed status %+v (ok %v, err %v)", saved, ok, err)
	}
	_, _, tasks := e.ctrd.Lookup(c.ID).State()
	if len(tasks) != 1 {
		t.Fatalf("%d tasks", len(tasks))
	}
	if started, deleted, _ := tasks[0].State(); !started || deleted {
		t.Errorf("task started %v deleted %v", started, deleted)
	}
	if c.IO() == nil {
		t.Error("container IO not set")
	}
	if got := e.takeEvents(); len(got) != 1 || got[0] != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
		t.Errorf("events = %v", got)
	}
	// Starting twice is refused.
	if err := e.c.Start(context.Background(), c); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: err = %v, want FailedPrecondition", err)
	}
}

// TestStartFailure: a task that cannot be made or started is deleted and
// the container reported EXITED with reason StartError.
func TestStartFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*backendtest.Container)
		task   bool
	}{
		{"NewTask", func(c *backendtest.Container) { c.NewTaskErr = backendtest.ErrInjected }, false},
		{"task Start", func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			ctx := context.Background()
			c := e.create(t, "app")
			e.takeEvents()
			fc := e.ctrd.Lookup(c.ID)
			tc.inject(fc)

			err := e.c.Start(ctx, c)
			if !errors.Is(err, backendtest.ErrInjected) {
				t.Fatalf("err = %v, want the injected failure", err)
			}
			st := c.Status()
			if st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "StartError" || st.ExitCode != 128 || !strings.Contains(st.Message, backendtest.ErrInjected.Error()) {
				t.Errorf("status = %+v, want EXITED with reason StartError", st)
			}
			if st.Starting {
				t.Error("Starting left set")
			}
			if c.IO() != nil {
				t.Error("the IO of a failed start is left set")
			}
			// The exit is checkpointed.
			saved, ok, err := LoadStatus(filepath.Join(e.root, "containers", c.ID))
			if err != nil || !ok || saved.Reason != "StartError" {
				t.Errorf("checkpointed status %+v (ok %v, err %v)", saved, ok, err)
			}
			deleted, _, tasks := fc.State()
			if deleted {
				t.Error("containerd container deleted: Remove owns that")
			}
			if tc.task != (len(tasks) == 1) || len(tasks) > 1 {
				t.Fatalf("%d tasks made, want %v", len(tasks), tc.task)
			}
			for _, task := range tasks {
				if _, deleted, kill := task.State(); !deleted || !kill {
					t.Errorf("task: deleted %v with process kill %v", deleted, kill)
				}
			}
			if _, err := fc.Task(ctx, nil); !errdefs.IsNotFound(err) {
				t.Errorf("a task is left: %v", err)
			}
			if got := e.takeEvents(); len(got) != 0 {
				t.Errorf("events %v for a start that failed", got)
			}
			// It cannot be started again, but it can be removed.
			if err := e.c.Start(ctx, c); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("restart: err = %v, want FailedPrecondition", err)
			}
			if err := e.c.Remove(ctx, c); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if n := e.o.Names.Len(); n != 0 {
				t.Errorf("%d container names reserved after removal", n)
			}
		})
	}
}

// TestStartPreconditions: a start in a sandbox that is not ready, or of a
// container being removed, is refused and changes nothing.
func TestStartPreconditions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *ctlEnv, c *Container)
	}{
		{"sandbox not ready", func(e *ctlEnv, _ *Container) { e.pod.SetNotReady(0, time.Now()) }},
		{"being removed", func(_ *ctlEnv, c *Container) { c.UpdateMemory(func(st *Status) { st.Removing = true }) }},
		{"starting", func(_ *ctlEnv, c *Container) { c.UpdateMemory(func(st *Status) { st.Starting = true }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			c := e.create(t, "app")
			tc.setup(e, c)
			if err := e.c.Start(context.Background(), c); !errdefs.IsFailedPrecondition(err) {
				t.Errorf("err = %v, want FailedPrecondition", err)
			}
			if st := c.Status().State(); st != runtimeapi.ContainerState_CONTAINER_CREATED {
				t.Errorf("state = %v, want still CREATED", st)
			}
			if _, _, tasks := e.ctrd.Lookup(c.ID).State(); len(tasks) != 0 {
				t.Errorf("%d tasks made", len(tasks))
			}
		})
	}
}

// TestStartWithPreparedRootfs: a container whose create prepared its rootfs
// is started with one task create carrying those mounts (no read of the
// record or the snapshot), and a start that fails still leaves no task.
func TestStartWithPreparedRootfs(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprint("start fails ", fail), func(t *testing.T) {
			e := newCtlEnv(t)
			ctx := context.Background()
			c := e.create(t, "app")
			c.rootfs = []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u"}}}
			if fail {
				e.ctrd.Lookup(c.ID).TaskStartErr = backendtest.ErrInjected
			}
			err := e.c.Start(ctx, c)
			if fail != (err != nil) || (fail && !errors.Is(err, backendtest.ErrInjected)) {
				t.Fatalf("Start: %v (want failure %v)", err, fail)
			}
			if len(e.ctrd.TaskCreates) != 1 {
				t.Fatalf("%d task creates", len(e.ctrd.TaskCreates))
			}
			req := e.ctrd.TaskCreates[0]
			if req.GetContainerID() != c.ID || len(req.GetRootfs()) != 1 || req.GetRootfs()[0].GetType() != "overlay" || req.GetStdout() == "" {
				t.Errorf("task create request = %v", req)
			}
			_, _, tasks := e.ctrd.Lookup(c.ID).State()
			if len(tasks) != 1 {
				t.Fatalf("%d tasks", len(tasks))
			}
			started, deleted, _ := tasks[0].State()
			if fail {
				if !deleted {
					t.Error("failed start left its task")
				}
				return
			}
			if st := c.Status(); !started || deleted || st.Pid != 1000 || st.State() != runtimeapi.ContainerState_CONTAINER_RUNNING {
				t.Errorf("task started %v deleted %v, status %+v", started, deleted, st)
			}
		})
	}
}

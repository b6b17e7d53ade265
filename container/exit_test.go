package container

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExitDeletesTaskWithoutKillWhenNothingCanBeLeft: the exit handler
// deletes the task in one call when no process of the container can be
// left (its own PID namespace, or an empty cgroup) and kills what is left
// first (containerd's WithProcessKill) otherwise.
func TestExitDeletesTaskWithoutKillWhenNothingCanBeLeft(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	busy := t.TempDir()
	if err := os.WriteFile(filepath.Join(busy, "cgroup.procs"), []byte("4242\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		pid       runtimeapi.NamespaceMode
		cgroupDir string
		wantKill  bool
	}{
		{"own PID namespace", runtimeapi.NamespaceMode_CONTAINER, "", false},
		{"pod PID namespace, empty cgroup", runtimeapi.NamespaceMode_POD, empty, false},
		{"pod PID namespace, process left", runtimeapi.NamespaceMode_POD, busy, true},
		{"pod PID namespace, cgroup unknown", runtimeapi.NamespaceMode_POD, "", true},
		{"pod PID namespace, cgroup gone", runtimeapi.NamespaceMode_POD, filepath.Join(empty, "gone"), true},
		{"host PID namespace, empty cgroup", runtimeapi.NamespaceMode_NODE, empty, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			ctx := context.Background()
			c := e.startWithPID(t, ctx, tc.pid)
			c.UpdateMemory(func(st *Status) { st.CgroupDir = tc.cgroupDir })
			e.c.HandleExit(ctx, c.ID, 0, time.Unix(1700000002, 0))
			if st := c.Status(); st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.Reason != "Completed" {
				t.Fatalf("status = %+v, want EXITED/Completed", st)
			}
			_, _, tasks := e.ctrd.Lookup(c.ID).State()
			if len(tasks) != 1 {
				t.Fatalf("%d tasks", len(tasks))
			}
			if _, deleted, kill := tasks[0].State(); !deleted || kill != tc.wantKill {
				t.Errorf("task deleted %v with process kill %v, want deleted with process kill %v", deleted, kill, tc.wantKill)
			}
		})
	}
}

// TestConcurrentExitHandlersDeleteTheTaskOnce: an exit reported at once by
// the event stream and by a stop's own wait is handled by the first handler
// alone (Container.finishing): the others return at once, the task is
// deleted once (a second deletion would be refused, and containerd logs
// it), and the exit is recorded once with its code.
func TestConcurrentExitHandlersDeleteTheTaskOnce(t *testing.T) {
	e := newCtlEnv(t)
	ctx := context.Background()
	c := e.startWithPID(t, ctx, runtimeapi.NamespaceMode_CONTAINER)
	fake := e.ctrd.Live[c.ID]
	fake.Mu.Lock()
	// A slow deletion: every handler that gets past the check overlaps it.
	fake.OnTaskDelete = func() { time.Sleep(50 * time.Millisecond) }
	fake.Mu.Unlock()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { e.c.HandleExit(ctx, c.ID, 7, time.Unix(1700000002, 0)) })
	}
	wg.Wait()
	select {
	case <-c.Stopped():
	case <-time.After(10 * time.Second):
		t.Fatal("exit not recorded")
	}
	if st := c.Status(); st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 {
		t.Errorf("state %v exit code %d, want EXITED 7", st.State(), st.ExitCode)
	}
	fake.Mu.Lock()
	calls := fake.TaskDeletes
	fake.Mu.Unlock()
	if calls != 1 {
		t.Errorf("task deleted %d times, want once", calls)
	}
}

package sandbox

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"google.golang.org/grpc"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// racingContainer hands out tasks whose Delete loses the race with a
// concurrent deletion (the exit handler's): the task is gone, but the call
// fails with the shim's connection closing under it.
type racingContainer struct{ containerd.Container }

func (c racingContainer) Task(ctx context.Context, a cio.Attach) (containerd.Task, error) {
	t, err := c.Container.Task(ctx, a)
	if err != nil {
		return nil, err
	}
	return racingTask{t}, nil
}

type racingTask struct{ containerd.Task }

func (t racingTask) Delete(ctx context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	if _, err := t.Task.Delete(ctx, opts...); err != nil {
		return nil, err
	}
	return nil, errors.New("ttrpc: closed")
}

// TestRegressionStopPodSandboxRacesExitHandlerDelete: a StopPodSandbox
// that came right after the pause process died (its exit recorded, the
// exit handler still deleting the task) deleted the task too, lost the
// race with "ttrpc: closed" and failed (seen in the e2e
// TestSandboxPauseKilledBecomesNotReady). A task gone by the other
// deletion is now no failure.
func TestRegressionStopPodSandboxRacesExitHandlerDelete(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	// The exit is recorded; the handler's task deletion is under way.
	e.c.recordExit(sb, 137, e.c.now())
	sb.Container = racingContainer{sb.Container}
	if err := e.c.Stop(context.Background(), sb); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := sb.Container.Task(context.Background(), nil); err == nil {
		t.Error("pause task not deleted")
	}
}

// slowDeletes is containerd whose Tasks/Delete takes a while and counts
// the calls, and how many ran at once.
type slowDeletes struct {
	*backendtest.Ctrd
	mu             sync.Mutex
	calls, running int
	maxRunning     int
}

func (s *slowDeletes) TaskService() tasks.TasksClient {
	return slowDeleteTasks{TasksClient: s.Ctrd.TaskService(), s: s}
}

type slowDeleteTasks struct {
	tasks.TasksClient
	s *slowDeletes
}

func (t slowDeleteTasks) Delete(ctx context.Context, r *tasks.DeleteTaskRequest, opts ...grpc.CallOption) (*tasks.DeleteResponse, error) {
	t.s.mu.Lock()
	t.s.calls++
	t.s.running++
	t.s.maxRunning = max(t.s.maxRunning, t.s.running)
	t.s.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	defer func() {
		t.s.mu.Lock()
		t.s.running--
		t.s.mu.Unlock()
	}()
	return t.TasksClient.Delete(ctx, r, opts...)
}

// TestRegressionPauseTaskDeletedOnceWhenStopRacesExitHandler: a
// StopPodSandbox right after the pause process died deleted its task while
// the exit handler was deleting it; with containerd 2.4 the two deletions
// made containerd drop the shim's connection while the shim lived on (3 of
// 150 pods of a make benchmark run kept a shim that only the removal's
// /proc reap killed). The deletions now run one at a time, and the second
// finds the task gone without asking containerd.
func TestRegressionPauseTaskDeletedOnceWhenStopRacesExitHandler(t *testing.T) {
	e := newRunEnv(t)
	ctrd := &slowDeletes{Ctrd: e.ctrd}
	e.o.Deps.Containerd = ctrd
	e.c = NewController(e.o)
	ctx := context.Background()
	id, err := e.c.Run(ctx, testPod("web"), "")
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := e.o.Store.Get(id)
	var wg sync.WaitGroup
	wg.Go(func() { e.c.HandleExit(ctx, sb, 137, e.c.now()) })
	// The stop comes once the exit is recorded, while the handler deletes.
	for st, _ := sb.State(); st == StateReady; st, _ = sb.State() {
		time.Sleep(time.Millisecond)
	}
	if err := e.c.Stop(ctx, sb); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	wg.Wait()
	ctrd.mu.Lock()
	defer ctrd.mu.Unlock()
	if ctrd.maxRunning != 1 || ctrd.calls != 1 {
		t.Errorf("Tasks/Delete of the pause task: %d calls, %d at once; want 1 call", ctrd.calls, ctrd.maxRunning)
	}
	if !sb.NoTask() {
		t.Error("the sandbox does not know its task is gone")
	}
}

package sandbox

import (
	"context"
	"errors"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
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

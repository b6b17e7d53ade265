package server

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRegressionContainerIORace: StartContainer set the container's IO
// after the container was in the store, while RemoveContainer, attach, log
// reopening and the exit handler read it without synchronisation. Run with
// -race: the old code is reported. Removal during a start is also refused
// now (it used to delete the task under the starting RPC).
func TestRegressionContainerIORace(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	ctx := context.Background()
	for i := range 8 {
		id := e.createContainer(t, pod, ctrConfig(fmt.Sprintf("app%d", i)))
		var wg sync.WaitGroup
		var startErr, removeErr error
		wg.Go(func() { startErr = e.startContainerErr(id) })
		wg.Go(func() {
			_, removeErr = e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		})
		wg.Go(func() {
			_, _ = e.s.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
		})
		wg.Wait()
		if removeErr != nil && !errdefs.IsFailedPrecondition(removeErr) {
			t.Errorf("RemoveContainer during StartContainer: %v", removeErr)
		}
		if startErr != nil && !errdefs.IsNotFound(startErr) && !errdefs.IsFailedPrecondition(startErr) {
			t.Errorf("StartContainer during RemoveContainer: %v", startErr)
		}
		// Whatever the order, the container can be removed afterwards and
		// nothing of it is left.
		if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
		if _, err := e.s.containers.Get(id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s still in the store: %v", id, err)
		}
		if _, err := e.ctrd.container(id).Task(ctx, nil); !errdefs.IsNotFound(err) {
			t.Errorf("container %s left a task: %v", id, err)
		}
	}
}

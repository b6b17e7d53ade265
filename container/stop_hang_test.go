package container

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRegressionRemovePodSandboxHangsOnMissedContainerExit: the live
// fuzzer saw RemovePodSandbox hit its 30 s deadline. The pod's containers
// are stopped first, and a container stop waited for the exit only through
// the task exit event: one that came late (the event monitor busy) or not
// at all (lost while re-subscribing) held the stop until its deadline. The
// stop now also waits on the task itself and records the exit it reports.
func TestRegressionRemovePodSandboxHangsOnMissedContainerExit(t *testing.T) {
	e := newCtlEnv(t) // no OnKill: the exit event never arrives
	c := e.create(t, "app")
	if err := e.c.Start(context.Background(), c); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.c.StopAll(ctx, testPodID); err != nil {
		t.Fatalf("StopAll of a pod whose container's exit event never came: %v", err)
	}
	st := c.Status()
	if st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Errorf("state %v exit code %d, want EXITED 137 (from the task's own wait)", st.State(), st.ExitCode)
	}
	if err := e.c.RemoveAll(ctx, testPodID); err != nil {
		t.Fatalf("RemoveAll: %v", err)
	}
	if _, err := e.o.Store.Get(c.ID); err == nil {
		t.Error("the container is still in the store")
	}
}

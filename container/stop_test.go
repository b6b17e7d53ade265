package container

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Stop addresses the task by the container's ID on the task service. A task
// already deleted (its exit being recorded by the exit handler) is not an
// error: the stop returns once the handler's exit is recorded, with its
// code, without sending a signal or waiting out the grace period.
func TestStopOfTaskDeletedByExitHandlerReturnsRecordedExit(t *testing.T) {
	e := newCtlEnv(t)
	c := e.create(t, "app")
	if err := e.c.Start(context.Background(), c); err != nil {
		t.Fatalf("Start: %v", err)
	}
	fake := e.ctrd.Live[c.ID]
	fake.Mu.Lock()
	task := fake.ActiveTask
	fake.ActiveTask = nil // deleted: the handler now drains the output, then records
	fake.Mu.Unlock()
	go func() {
		time.Sleep(50 * time.Millisecond)
		e.c.RecordExit(c, 3, time.Now(), ExitReason(false, 3), "")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.c.Stop(ctx, c, time.Minute); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Stop took %v: it waited out the grace period", d)
	}
	if st := c.Status(); st.State() != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 3 {
		t.Errorf("state %v exit code %d, want EXITED 3 (the handler's)", st.State(), st.ExitCode)
	}
	if k := task.Killed(); len(k) != 0 {
		t.Errorf("signals %v sent to a deleted task", k)
	}
}

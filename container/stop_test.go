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

// TestStopKillsEveryProcessOnlyWithoutOwnPIDNamespace: a SIGKILL goes to
// the init alone when the container has a PID namespace of its own (the
// kernel kills the rest when the init dies, as the built-in CRI relies on;
// runc 1.1's kill --all freezes and thaws the cgroup on cgroup v1 for
// nothing, 1.39x the built-in's StopContainer in make benchmark's scale
// run), and to every process when it shares one (the pod's, the host's).
func TestStopKillsEveryProcessOnlyWithoutOwnPIDNamespace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pid     runtimeapi.NamespaceMode
		timeout time.Duration
		want    []bool
	}{
		{"own PID namespace, no grace period", runtimeapi.NamespaceMode_CONTAINER, 0, []bool{false}},
		{"pod PID namespace, no grace period", runtimeapi.NamespaceMode_POD, 0, []bool{true}},
		{"host PID namespace, no grace period", runtimeapi.NamespaceMode_NODE, 0, []bool{true}},
		// The stop signal goes to the init; the SIGKILL after the grace
		// period as above.
		{"own PID namespace, grace period out", runtimeapi.NamespaceMode_CONTAINER, time.Second, []bool{false, false}},
		{"pod PID namespace, grace period out", runtimeapi.NamespaceMode_POD, time.Second, []bool{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c := e.startWithPID(t, ctx, tc.pid)
			fake := e.ctrd.Live[c.ID]
			fake.Mu.Lock()
			task := fake.ActiveTask
			fake.Mu.Unlock()
			if err := e.c.Stop(ctx, c, tc.timeout); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			task.Mu.Lock()
			got := append([]bool(nil), task.KillAll...)
			task.Mu.Unlock()
			if len(got) != len(tc.want) {
				t.Fatalf("kills to all %v (signals %v), want %v", got, task.Killed(), tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("kills to all %v (signals %v), want %v", got, task.Killed(), tc.want)
					break
				}
			}
		})
	}
}

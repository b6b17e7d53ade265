package sandbox

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestRegressionRemovePodSandboxHangsOnMissedPauseExit: the live fuzzer saw
// RemovePodSandbox hit its 30 s deadline. The stop waited for the pause
// exit only through the exit event, which comes late when the event
// monitor is busy (it deletes each exited pause task in line) or not at
// all (lost while re-subscribing): the removal then waited
// PauseStopTimeout, as long as the client's deadline. The stop now also
// waits on the task itself, so a pause that died is seen at once.
func TestRegressionRemovePodSandboxHangsOnMissedPauseExit(t *testing.T) {
	e := newRunEnv(t) // no OnKill: the pause's exit event never arrives
	sb := e.run(t, "web")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.c.Remove(ctx, sb); err != nil {
		t.Fatalf("Remove of a pod whose pause exit event never came: %v", err)
	}
	if st, _ := sb.State(); st != StateNotReady || exitCodeOf(sb) != 137 {
		t.Errorf("state %v exit code %d, want not ready 137 (from the task's own wait)", st, exitCodeOf(sb))
	}
	if _, err := e.o.Store.Get(sb.ID); err == nil {
		t.Error("the sandbox is still in the store")
	}
	if got := fmt.Sprint(e.takeEvents()); got != "[CONTAINER_STOPPED_EVENT CONTAINER_DELETED_EVENT]" {
		t.Errorf("events = %s", got)
	}
	// The event arriving after all changes nothing.
	e.c.HandleExit(context.Background(), sb, 9, time.Unix(1700000099, 0))
	if got := e.takeEvents(); len(got) != 0 || exitCodeOf(sb) != 137 {
		t.Errorf("the late event emitted %v, exit code %d", got, exitCodeOf(sb))
	}
}

// TestRegressionRemovePodSandboxHangsBehindStuckStop: a stop stuck in a
// CNI DEL (a hung plugin, a stop without a deadline) held the sandbox's
// stop lock, a plain mutex, and every later RemovePodSandbox of the pod
// waited for it past its own deadline. The lock now gives up with the
// request: DeadlineExceeded, and the pod stays for the retry.
func TestRegressionRemovePodSandboxHangsBehindStuckStop(t *testing.T) {
	e, _ := newLifecycleEnv(t)
	sb := e.run(t, "web")
	entered, release := make(chan struct{}), make(chan struct{})
	var once bool
	e.net.OnRemove = func(context.Context) error {
		if !once {
			once = true
			close(entered)
			<-release // ignores its context, as a hung plugin would
		}
		return nil
	}
	stopDone := make(chan error, 1)
	go func() { stopDone <- e.c.Stop(context.Background(), sb) }()
	<-entered
	// Should the lock not give up, the stuck stop ends later and the
	// removal finishes after its deadline: a failure, not a hung test.
	safety := time.AfterFunc(5*time.Second, func() { close(release) })

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := e.c.Remove(ctx, sb)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Remove behind a stuck stop = %v, want DeadlineExceeded when its context ends", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err != nil {
		t.Fatalf("the sandbox left the store after a failed removal: %v", err)
	}

	// Retryable: once the stuck stop ends, the removal succeeds.
	if safety.Stop() {
		close(release)
	}
	if err := <-stopDone; err != nil {
		t.Fatalf("the stuck stop: %v", err)
	}
	if err := e.c.Remove(context.Background(), sb); err != nil {
		t.Fatalf("retried Remove: %v", err)
	}
	if _, err := e.o.Store.Get(sb.ID); err == nil {
		t.Error("the sandbox is still in the store after the retry")
	}
}

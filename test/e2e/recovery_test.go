package e2e

// Recovery and shutdown bounds of a private daemon: exits around a restart
// are not lost, and SIGTERM ends the daemon even with a client holding a
// GetContainerEvents stream open (kubelet's evented PLEG never leaves).

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestRegressionE2EExitAroundRestart: containers that exit while the daemon
// is down, or while it is starting (recovering, subscribing to task events),
// must all end up EXITED with their real exit code. Before, the task event
// subscription started after recovery and did not reconcile: an exit in
// between stayed RUNNING forever.
func TestRegressionE2EExitAroundRestart(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	trigger := t.TempDir()
	podID, podCfg := e.runPod("exit-around-restart")

	// Each container exits with 7 once its trigger file appears.
	delays := map[string]time.Duration{
		"t0": 0, "t50ms": 50 * time.Millisecond, "t150ms": 150 * time.Millisecond,
		"t300ms": 300 * time.Millisecond, "t600ms": 600 * time.Millisecond,
		"t1s": time.Second, "t2s": 2 * time.Second,
	}
	names := []string{"down"}
	for n := range delays {
		names = append(names, n)
	}
	ids := map[string]string{}
	for _, n := range names {
		cfg := framework.NewContainerConfig(n, framework.BusyboxImageRef,
			ctrSh("while [ ! -e /trigger/"+n+" ]; do sleep 0.02; done; exit 7")...)
		cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/trigger", HostPath: trigger, Readonly: true}}
		ids[n] = e.run(podID, podCfg, cfg)
	}
	for _, n := range names {
		framework.WaitForContainerState(t, rc, ids[n], runtimeapi.ContainerState_CONTAINER_RUNNING, 30*time.Second)
	}
	touch := func(n string) {
		if err := os.WriteFile(filepath.Join(trigger, n), nil, 0o644); err != nil {
			t.Errorf("trigger %s: %v", n, err)
		}
	}

	framework.KillDaemon(t, e.d)
	touch("down")
	time.Sleep(time.Second) // "down" exits while the daemon is down
	// The others exit while the daemon starts: recovery, event subscription.
	for n, d := range delays {
		time.AfterFunc(d, func() { touch(n) })
	}
	e.d.Restart() // the process is gone: Restart only starts it
	rc = e.rc()
	for _, n := range names {
		st := framework.WaitForContainerState(t, rc, ids[n], runtimeapi.ContainerState_CONTAINER_EXITED, time.Minute)
		if st.GetExitCode() != 7 || st.GetReason() != "Error" {
			t.Errorf("container %s: exit %d reason %q, want 7 Error", n, st.GetExitCode(), st.GetReason())
		}
		if st.GetFinishedAt() < st.GetStartedAt() {
			t.Errorf("container %s: finished %d before it started %d", n, st.GetFinishedAt(), st.GetStartedAt())
		}
	}
}

// TestRegressionE2EShutdownWithOpenEventStream: SIGTERM must end the daemon
// within --shutdown-timeout (plus a margin) while a client holds a
// GetContainerEvents stream open, the stream must end, and the pod and its
// container must survive the stop. Before, GracefulStop waited for the
// stream forever.
func TestRegressionE2EShutdownWithOpenEventStream(t *testing.T) {
	const shutdownTimeout = 3 * time.Second
	e := newCtrEnv(t, "--shutdown-timeout", shutdownTimeout.String())
	rc := e.rc()

	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := rc.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *runtimeapi.ContainerEventResponse, 100)
	ended := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			events <- ev
		}
	}()
	podID, podCfg := e.runPod("shutdown-stream")
	ctrID := e.run(podID, podCfg, framework.NewContainerConfig("sleeper", framework.BusyboxImageRef, "sleep", "3600"))
	// The stream is live: it carries the pod's events.
	select {
	case ev := <-events:
		t.Logf("event stream live: %s %s", ev.GetContainerEventType(), ev.GetContainerId())
	case err := <-ended:
		t.Fatalf("event stream ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no event on the stream within 30s")
	}

	// Generous bound: the daemon must exit, not be fast.
	bound := shutdownTimeout + 30*time.Second
	start := time.Now()
	state, exited := framework.SignalDaemon(t, e.d, syscall.SIGTERM, bound)
	if !exited {
		t.Fatalf("daemon still running %s after SIGTERM (--shutdown-timeout %s) with a GetContainerEvents stream open", bound, shutdownTimeout)
	}
	t.Logf("daemon exited %s after SIGTERM: %v", time.Since(start).Round(time.Millisecond), state)
	if !state.Success() {
		t.Errorf("daemon exit after SIGTERM: %v, want success", state)
	}
	select {
	case err := <-ended:
		t.Logf("event stream ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Error("event stream still open after the daemon exited")
	}

	// A stop is not a teardown: the workloads run on.
	e.d.Start()
	rc = e.rc()
	if st, _ := framework.ListedPodState(t, rc, podID); st != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod after the restart: %v, want READY", st)
	}
	if st := framework.ContainerStatusOrFail(t, rc, ctrID); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after the restart: %v, want RUNNING", st.GetState())
	}
}

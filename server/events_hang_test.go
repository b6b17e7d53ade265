package server

import (
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

// TestRegressionRemovePodSandboxHangsBehindPauseTaskDelete: the event
// monitor deleted each exited pause task in line, so on a loaded node (a
// shim taking seconds to delete a task) every exit behind it waited: the
// container exits a pod stop waits for among them, and RemovePodSandbox
// calls hit their 30 s deadline in the live fuzzer. A pause exit is now
// handled aside, like a container's.
func TestRegressionRemovePodSandboxHangsBehindPauseTaskDelete(t *testing.T) {
	e, f := newRecoveryEnv(t)
	slowc, _ := e.fakeSandboxOnDisk(t, f, "slow", false)
	slowPause := slowc.StartTask(100, containerd.Running, 0)
	sbc, sbmd := e.fakeSandboxOnDisk(t, f, "pod", false)
	sbc.StartTask(200, containerd.Running, 0)
	cc, md := e.fakeContainerOnDisk(t, f, sbmd.ID, "app", false, runningStatus())
	task := cc.StartTask(4242, containerd.Running, 0)
	wc, wmd := e.fakeContainerOnDisk(t, f, sbmd.ID, "warmup", false, runningStatus())
	warmup := wc.StartTask(4243, containerd.Running, 0)

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	deleting := make(chan struct{}, 1)
	slowPause.Mu.Lock()
	slowPause.OnDelete = func() {
		select {
		case deleting <- struct{}{}:
		default:
		}
		<-release // the shim takes its time
	}
	slowPause.Mu.Unlock()
	startState(t, e.s)
	// Once an exit event is handled, the monitor is past its first
	// reconciliation and follows the event stream.
	warmup.Exit(0)
	backendtest.WaitFor(t, "the warm-up exit", func() bool {
		return containerState(t, e.s, wmd.ID).GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	})

	slowPause.Exit(137)
	<-deleting // the pause task's deletion is under way
	task.Exit(3)
	backendtest.WaitFor(t, "the container's exit recorded while another pod's pause task is being deleted", func() bool {
		return containerState(t, e.s, md.ID).GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	})
}

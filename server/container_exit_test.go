package server

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRegressionCreatedContainerExitedByDeletedUnstartedTask: a daemon
// killed inside StartContainer leaves a task that was never started;
// recovery deletes it, and containerd reports that deletion as an exit
// (137). That exit must not turn the CREATED container into EXITED 137:
// the client retries StartContainer (long chaos run: "exited with 29,
// reported 137").
func TestRegressionCreatedContainerExitedByDeletedUnstartedTask(t *testing.T) {
	e := newTestEnv(t)
	defer stopBackground(e.s)
	pod := e.runPod(t, podConfig("p"))
	id := e.createContainer(t, pod, ctrConfig("exiter"))

	e.s.ctrs().HandleExit(context.Background(), id, 137, time.Now())

	resp, err := e.s.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus: %v", err)
	}
	if got := resp.GetStatus().GetState(); got != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("state after the exit of a never-started task: %v (exit code %d), want CONTAINER_CREATED",
			got, resp.GetStatus().GetExitCode())
	}
	e.startContainer(t, id)
}

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// startLostShim starts a process that looks like a runc v2 shim serving id
// in namespace (its command line), with a child, as the shim of a task
// containerd no longer knows would: containerd killed while the task was
// being created comes back without the task, and nothing stops the shim.
func startLostShim(t *testing.T, namespace, id string) *exec.Cmd {
	t.Helper()
	cmd := &exec.Cmd{
		Path: "/bin/sh",
		Args: []string{filepath.Join(t.TempDir(), "containerd-shim-runc-v2"), "-c", "sleep 600; true", "-namespace", namespace, "-id", id, "-address", "/run/lost.sock"},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return cmd
}

// TestRegressionShimLeakedWhenContainerdForgotTask: removing a sandbox or a
// container kills a shim that still serves its ID although containerd no
// longer has its task (the long fault campaign found two such shims after
// containerd was killed during a task create); shims of other IDs live on.
func TestRegressionShimLeakedWhenContainerdForgotTask(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	ns := e.d.Opts.Namespace
	podID, _ := e.runPod("lost-shim")
	other, _ := e.runPod("other")
	lostPod := startLostShim(t, ns, podID)
	lostCtr := startLostShim(t, ns, "0123456789abcdef-not-a-container")
	otherShim := startLostShim(t, ns, other)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := lostPod.Process.Wait(); done <- err }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the lost shim of the removed pod (pid %d) is still running", lostPod.Process.Pid)
	}
	for _, c := range []*exec.Cmd{lostCtr, otherShim} {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(c.Process.Pid))); err != nil {
			t.Errorf("shim %d of another ID was killed", c.Process.Pid)
		}
	}
}

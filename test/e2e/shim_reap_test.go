package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
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

// TestRegressionShimLeakedWhenContainerdForgotTask: removing a sandbox
// kills a shim that still serves its ID although containerd no longer has
// its task (the long fault campaign found two such shims after containerd
// was killed during a task create); shims of other IDs live on. Only
// containerd's death can lose a task, so the scan runs for pods made before
// containerd's event stream last broke: a pod run since is removed without
// it (the /proc scan costs ~13 ms with 800 processes).
func TestRegressionShimLeakedWhenContainerdForgotTask(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	ctrd := startPrivateContainerd(t)
	denv := env
	denv.ContainerdAddress = ctrd.socket
	d := framework.StartDaemon(t, denv, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	t.Cleanup(func() {
		if d.IsRunning() {
			framework.StopAndRemovePods(t, d.RuntimeClient())
		}
		framework.UnmountUnder(t, d.Dir)
	})
	rc := d.RuntimeClient()
	ns := d.Opts.Namespace
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := func(name string) string {
		t.Helper()
		resp, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig(name, framework.WithLogDirectory(t.TempDir()))})
		if err != nil {
			t.Fatalf("RunPodSandbox(%s): %v", name, err)
		}
		return resp.GetPodSandboxId()
	}
	remove := func(id string) {
		t.Helper()
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Not killed: the process exists and is no zombie (the test is the
	// parent of the fake shims and reaps them only at its end).
	alive := func(c *exec.Cmd) bool {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Process.Pid), "stat"))
		if err != nil {
			return false
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		return len(f) > 0 && f[0] != "Z"
	}

	podID := run("lost-shim")
	other := run("other")
	ctrd.stop()
	ctrd.start()
	waitFor(t, 30*time.Second, "RuntimeReady=true after containerd restart", func() bool {
		ok, _ := runtimeReady(ctx, rc)
		return ok
	})
	lostPod := startLostShim(t, ns, podID)
	lostCtr := startLostShim(t, ns, "0123456789abcdef-not-a-container")
	otherShim := startLostShim(t, ns, other)
	remove(podID)
	done := make(chan error, 1)
	go func() { _, err := lostPod.Process.Wait(); done <- err }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the lost shim of the removed pod (pid %d) is still running", lostPod.Process.Pid)
	}
	for _, c := range []*exec.Cmd{lostCtr, otherShim} {
		if !alive(c) {
			t.Errorf("shim %d of another ID was killed", c.Process.Pid)
		}
	}

	// A pod run after the restart: containerd cannot have lost its task,
	// and its removal does not scan for shims.
	later := run("after-restart")
	decoy := startLostShim(t, ns, later)
	remove(later)
	if !alive(decoy) {
		t.Errorf("the removal of a pod run since containerd's restart scanned for lost shims")
	}
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestContainerStopKillsEveryProcess: a stop without grace period leaves no
// process of the container behind, whether the container has a PID
// namespace of its own (the SIGKILL goes to its init, and the kernel kills
// the rest of the namespace with it) or shares the pod's (the SIGKILL goes
// to every process of its cgroup); so does a StopPodSandbox (the pod's
// containers, then the pause alone). Each container runs a shell with two
// background sleeps.
func TestContainerStopKillsEveryProcess(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	for _, tc := range []struct {
		name string
		pid  runtimeapi.NamespaceMode
		// podStop stops the pod (its containers, then the pause) instead
		// of the container.
		podStop bool
	}{
		{"own-pid-namespace", runtimeapi.NamespaceMode_CONTAINER, false},
		{"pod-pid-namespace", runtimeapi.NamespaceMode_POD, false},
		{"own-pid-namespace-pod-stop", runtimeapi.NamespaceMode_CONTAINER, true},
		{"pod-pid-namespace-pod-stop", runtimeapi.NamespaceMode_POD, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podID, podCfg := e.runPod("kill-"+tc.name, func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.Pid = tc.pid
			})
			cfg := framework.NewContainerConfig("sleeper", framework.BusyboxImageRef,
				ctrSh(`sleep 1000 & sleep 1000 & echo ready; wait`)...)
			cfg.Linux.SecurityContext.NamespaceOptions.Pid = tc.pid
			id := e.run(podID, podCfg, cfg)
			ctrWaitLogLine(t, ctrLogPath(podCfg, cfg), "stdout", "ready", 30*time.Second)
			procs := framework.CgroupV1File("memory", framework.ContainerCgroupsPath(t, rc, id), "cgroup.procs")
			pids := cgroupPIDs(t, procs)
			if len(pids) < 3 {
				t.Fatalf("%d processes in %s before the stop (%v), want the shell and two sleeps", len(pids), procs, pids)
			}
			if tc.podStop {
				ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
				defer cancel()
				if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
					t.Fatalf("StopPodSandbox: %v", err)
				}
			} else {
				framework.StopContainerOrFail(t, rc, id, 0)
			}
			st := framework.ContainerStatusOrFail(t, rc, id)
			if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
				t.Errorf("state %s exit %d, want EXITED 137 (SIGKILL)", st.State, st.ExitCode)
			}
			for _, pid := range pids {
				if alive, cmd := processAlive(pid); alive {
					t.Errorf("process %d (%s) of the stopped container is alive", pid, cmd)
				}
			}
		})
	}
}

// cgroupPIDs reads a cgroup.procs file.
func cgroupPIDs(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q: %v", path, f, err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// processAlive reports whether pid is a live process (not a zombie), with
// its command line.
func processAlive(pid int) (bool, string) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false, ""
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
		return false, ""
	}
	return true, strings.ReplaceAll(string(cmd), "\x00", " ")
}

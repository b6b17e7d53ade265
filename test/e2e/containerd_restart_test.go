package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/ctrdconfig"
	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// privateContainerd runs a containerd of the test's own (own root, state and
// sockets), so the test can stop and restart it without disturbing others.
type privateContainerd struct {
	t      *testing.T
	dir    string
	socket string
	bin    string // containerd binary
	proc   *framework.Process
}

func startPrivateContainerd(t *testing.T) *privateContainerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	c := &privateContainerd{t: t, dir: dir, socket: filepath.Join(dir, "c.sock"), bin: "containerd"}
	// hack/compat.sh points E2E_CONTAINERD_BIN at a containerd 1.6/1.7 build.
	if b := os.Getenv("E2E_CONTAINERD_BIN"); b != "" {
		c.bin = b
	}
	cfg := ctrdconfig.Config(ctrdconfig.Options{
		Root:          filepath.Join(dir, "root"),
		State:         filepath.Join(dir, "state"),
		Address:       c.socket,
		DebugAddress:  filepath.Join(dir, "debug.sock"),
		ShimSocketDir: filepath.Join(dir, "s"),
		OptDir:        filepath.Join(dir, "opt"),
		DisableCRI:    true,
	})
	if isContainerd1(c.bin) { // config version 2, top-level listener tables
		t.Logf("private containerd: %s (1.x config)", c.bin)
		cfg = fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
imports = []
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = %[5]q
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, c.socket+".ttrpc",
			filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"))
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.stop()
		_ = exec.Command("umount", "-R", filepath.Join(dir, "state")).Run()
		_ = os.RemoveAll(dir)
	})
	c.start()
	return c
}

// isContainerd1: `containerd --version` prints
// "containerd github.com/containerd/containerd 1.6.20 ..." for 1.x
// (".../containerd/v2 v2.4.2 ..." for 2.x).
func isContainerd1(bin string) bool {
	out, _ := exec.Command(bin, "--version").Output()
	f := strings.Fields(string(out))
	return len(f) > 2 && strings.HasPrefix(strings.TrimPrefix(f[2], "v"), "1.")
}

func (c *privateContainerd) start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, "--config", filepath.Join(c.dir, "config.toml"))
	if strings.Contains(c.bin, "/") { // its own shim first on PATH
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.bin)+":"+os.Getenv("PATH"))
	}
	p, err := framework.StartProcess(cmd, filepath.Join(c.dir, "containerd.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.proc = p
	if err := p.WaitForSocket(c.socket, 30*time.Second); err != nil {
		c.t.Fatalf("private containerd: %v", err)
	}
}

func (c *privateContainerd) stop() {
	if c.proc == nil {
		return
	}
	c.proc.Stop(15 * time.Second)
	c.proc = nil
}

func runtimeReady(ctx context.Context, rc runtimeapi.RuntimeServiceClient) (bool, string) {
	resp, err := rc.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return false, "Status error: " + err.Error()
	}
	for _, c := range resp.GetStatus().GetConditions() {
		if c.GetType() == runtimeapi.RuntimeReady {
			return c.GetStatus(), c.GetReason() + ": " + c.GetMessage()
		}
	}
	return false, "no RuntimeReady condition"
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestContainerdRestart: the daemon survives containerd going away and
// coming back. RuntimeReady turns false and true again, the pod is still
// there and ready, and the event subscription is re-established (a pause
// process killed after the restart turns the pod NOTREADY without any RPC).
func TestContainerdRestart(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	ctrd := startPrivateContainerd(t)
	denv := env
	denv.ContainerdAddress = ctrd.socket
	d := framework.StartDaemon(t, denv, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	rc := d.RuntimeClient()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "ctrd-restart", Namespace: "e2e", Uid: "uid-" + framework.RandomSuffix()},
		LogDirectory: t.TempDir(),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	run, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	id := run.GetPodSandboxId()

	ctrd.stop()
	waitFor(t, 20*time.Second, "RuntimeReady=false while containerd is down", func() bool {
		ok, _ := runtimeReady(ctx, rc)
		return !ok
	})
	_, why := runtimeReady(ctx, rc)
	t.Logf("containerd down: RuntimeReady=false (%s)", why)
	if _, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err != nil {
		t.Errorf("ListPodSandbox while containerd is down: %v", err)
	}

	ctrd.start()
	waitFor(t, 30*time.Second, "RuntimeReady=true after containerd restart", func() bool {
		ok, _ := runtimeReady(ctx, rc)
		return ok
	})
	st, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	if st.GetStatus().GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state after containerd restart = %v, want READY", st.GetStatus().GetState())
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("verbose info has no pid: %v %q", err, st.GetInfo()["info"])
	}
	// Give the event monitor its re-subscription, then kill the pause process.
	time.Sleep(2 * time.Second)
	if err := syscall.Kill(info.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill pause %d: %v", info.Pid, err)
	}
	waitFor(t, 20*time.Second, "pod NOTREADY after its pause process was killed", func() bool {
		s, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
		return err == nil && s.GetStatus().GetState() == runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	})
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	out, _ := exec.Command("ctr", "-a", ctrd.socket, "-n", d.Opts.Namespace, "containers", "ls", "-q").Output()
	if len(out) != 0 {
		t.Errorf("containerd containers left: %s", out)
	}
}

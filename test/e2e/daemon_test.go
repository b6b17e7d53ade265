package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestDaemonRuntimeInfo: Version, Status (both conditions, verbose config,
// runtime handlers), RuntimeConfig, the socket's mode, and the /metrics
// endpoint counting every RPC by method and code.
func TestDaemonRuntimeInfo(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	port := framework.FreeTCPPort(t, 19100, 19500)
	pprofPort := framework.FreeTCPPort(t, 19500, 19900)
	d := framework.StartDaemon(t, env, framework.DaemonOptions{ExtraArgs: []string{
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--pprof-addr", fmt.Sprintf("127.0.0.1:%d", pprofPort)}})
	rc := d.RuntimeClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	v, err := rc.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetRuntimeName() != "cri-containerd" || v.GetRuntimeApiVersion() != "v1" || v.GetRuntimeVersion() == "" {
		t.Errorf("Version = %+v", v)
	}

	st, err := rc.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.GetStatus().GetConditions() {
		conds[c.GetType()] = c
	}
	if !conds[runtimeapi.RuntimeReady].GetStatus() {
		t.Errorf("RuntimeReady = %+v", conds[runtimeapi.RuntimeReady])
	}
	if env.CNIConfDir != "" && !conds[runtimeapi.NetworkReady].GetStatus() {
		t.Errorf("NetworkReady = %+v", conds[runtimeapi.NetworkReady])
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(st.GetInfo()["config"]), &cfg); err != nil {
		t.Fatalf("verbose config is not JSON: %v: %q", err, st.GetInfo()["config"])
	}
	if cfg["containerdNamespace"] != d.Opts.Namespace || cfg["socketPath"] != d.Socket {
		t.Errorf("verbose config does not show the effective settings: %v", cfg)
	}
	handlers := map[string]bool{}
	for _, h := range st.GetRuntimeHandlers() {
		handlers[h.GetName()] = true
	}
	if !handlers[""] || !handlers["runc"] {
		t.Errorf("runtime handlers = %v, want the default (\"\") and runc", handlers)
	}

	rcfg, err := rc.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rcfg.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("cgroup driver = %v", rcfg.GetLinux().GetCgroupDriver())
	}
	if _, err := rc.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.231.0.0/16"}},
	}); err != nil {
		t.Errorf("UpdateRuntimeConfig: %v", err)
	}
	if _, err := rc.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "not-a-cidr"}},
	}); err == nil {
		t.Errorf("UpdateRuntimeConfig accepted a bad CIDR")
	}

	fi, err := os.Stat(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode = %v, want a 0660 socket", fi.Mode())
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`cri_containerd_grpc_requests_total{code="OK",method="Version"} 1`,
		`cri_containerd_grpc_requests_total{code="InvalidArgument",method="UpdateRuntimeConfig"} 1`,
		`cri_containerd_grpc_request_duration_seconds_count{code="OK",method="Status"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// pprof is on its own listener, not on the metrics one.
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", pprofPort)); err != nil || resp.StatusCode != 200 {
		t.Errorf("pprof: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/goroutine?debug=1", port)); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("pprof on the metrics listener: %v %v, want 404", err, resp)
	} else {
		resp.Body.Close()
	}
}

// TestDaemonStaleSocketReplaced: a socket file left by a killed daemon is
// replaced at start; a socket another live daemon serves is not stolen.
func TestDaemonStaleSocketReplaced(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	framework.KillDaemon(t, d)
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("a killed daemon should leave its socket file: %v", err)
	}
	d.Restart()
	if _, err := d.RuntimeClient().Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("Version after restart over a stale socket: %v", err)
	}
	// A second daemon on the same (live) socket must refuse to start.
	none := filepath.Join(t.TempDir(), "none.toml")
	if err := os.WriteFile(none, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Its own empty namespace: the daemon recovers state before it binds,
	// and must not do so in another daemon's namespace (k8s.io by default).
	ns := "cri-e2e-sock-" + framework.RandomSuffix()
	t.Cleanup(func() { framework.CleanupNamespace(t, env.ContainerdAddress, ns) })
	out, err := exec.Command(d.Bin, "--socket-path", d.Socket, "--containerd-endpoint", env.ContainerdAddress,
		"--containerd-namespace", ns,
		"--root-dir", filepath.Join(t.TempDir(), "r"), "--state-dir", filepath.Join(t.TempDir(), "s"),
		"--metrics-addr", "", "--stream-port", "0", "--config", none).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use") {
		t.Fatalf("second daemon on a live socket: err=%v, output:\n%s", err, out)
	}
	if _, err := d.RuntimeClient().Version(context.Background(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("first daemon lost its socket: %v", err)
	}
}

// TestDaemonCommandLineErrors: a bad flag, an unknown config key, a missing
// named config file and an unreachable containerd each give a one-line error
// naming the problem and a non-zero exit.
func TestDaemonCommandLineErrors(t *testing.T) {
	env := framework.RequireStack(t)
	bin := framework.DaemonBinary(t, env)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("socket_path = \"/tmp/x.sock\"\nno_such_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(dir, "none.toml")
	if err := os.WriteFile(none, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--socket-path", filepath.Join(dir, "c.sock"), "--root-dir", filepath.Join(dir, "r"),
		"--state-dir", filepath.Join(dir, "s"), "--metrics-addr", "", "--stream-port", "0"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad flag", []string{"--no-such-flag"}, "no-such-flag"},
		{"unknown key", []string{"--config", bad}, `unknown key "no_such_key"`},
		{"missing config", []string{"--config", filepath.Join(dir, "missing.toml")}, "missing.toml"},
		{"bad value", []string{"--restrict-oom-score-adj", "sometimes"}, "restrict_oom_score_adj"},
		{"unreachable containerd", append([]string{"--config", none,
			"--containerd-endpoint", filepath.Join(dir, "nope.sock"), "--containerd-start-timeout", "2s"}, common...), "not reachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit code 0")
			}
			// The last line is the error; klog lines may precede it.
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "cri-containerd: ") || !strings.Contains(last, tc.want) {
				t.Fatalf("last stderr line = %q, want a one-line error containing %q\nall:\n%s", last, tc.want, stderr.String())
			}
		})
	}
}

// TestDaemonContainerEvents: GetContainerEvents streams the lifecycle of a
// sandbox (evented PLEG).
func TestDaemonContainerEvents(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	rc := d.RuntimeClient()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stream, err := rc.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *runtimeapi.ContainerEventResponse, 100)
	go func() {
		for {
			e, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- e
		}
	}()
	time.Sleep(200 * time.Millisecond) // let the subscription register
	run, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig("events")})
	if err != nil {
		t.Fatal(err)
	}
	id := run.GetPodSandboxId()
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var got []runtimeapi.ContainerEventType
	timeout := time.After(20 * time.Second)
	for len(got) < len(want) {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended; got %v", got)
			}
			if e.GetContainerId() != id {
				continue
			}
			if e.GetPodSandboxStatus().GetId() != id || e.GetCreatedAt() == 0 {
				t.Errorf("event without sandbox status or time: %+v", e)
			}
			got = append(got, e.GetContainerEventType())
		case <-timeout:
			t.Fatalf("events = %v, want %v", got, want)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events = %v, want %v", got, want)
		}
	}
}

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

const (
	nriAdjustLabel = "nri-e2e/adjust" // nriplugin.AdjustLabel
	nriMemoryLimit = 64 << 20
)

var (
	nriPluginOnce sync.Once
	nriPluginBin  string
	nriPluginErr  error
)

// nriPlugin builds the e2e NRI plugin (test/e2e/nriplugin) once.
func nriPlugin(t *testing.T) string {
	t.Helper()
	nriPluginOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cri-e2e-nriplugin-")
		if err != nil {
			nriPluginErr = err
			return
		}
		nriPluginBin = filepath.Join(dir, "nriplugin")
		cmd := exec.Command("go", "build", "-o", nriPluginBin, "./test/e2e/nriplugin")
		cmd.Dir = framework.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			nriPluginErr = err
			t.Logf("go build: %s", out)
		}
	})
	if nriPluginErr != nil {
		t.Fatal(nriPluginErr)
	}
	return nriPluginBin
}

// nriEnv is a private daemon with the e2e plugin pre-installed as 10-pre
// (started and synchronised by the daemon), its events in preEvents.
type nriEnv struct {
	*ctrEnv
	preEvents string
	mountSrc  string
}

func newNRIEnv(t *testing.T) *nriEnv {
	t.Helper()
	bin := nriPlugin(t)
	dir := t.TempDir()
	pluginDir, confDir, mountSrc := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d"), filepath.Join(dir, "src")
	for _, d := range []string{pluginDir, confDir, mountSrc} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pluginDir, "10-pre"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mountSrc, "hello"), []byte("from-nri\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	events := filepath.Join(dir, "pre.events")
	conf := "events=" + events + "\nmount-src=" + mountSrc + "\nmemory-limit=67108864\n"
	if err := os.WriteFile(filepath.Join(confDir, "10-pre.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newCtrEnv(t, "--nri-plugin-dir", pluginDir, "--nri-plugin-config-dir", confDir)
	n := &nriEnv{ctrEnv: e, preEvents: events, mountSrc: mountSrc}
	waitNRIEvent(t, events, "Synchronize", 30*time.Second)
	return n
}

// nriEvents are the lines of an events file.
func nriEvents(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// waitNRIEvent waits for a line starting with prefix and returns it.
func waitNRIEvent(t *testing.T, path, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range nriEvents(t, path) {
			if strings.HasPrefix(l, prefix) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no NRI event %q in %s; events:\n%s", prefix, path, strings.Join(nriEvents(t, path), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nriEventsOf are the event names (first word) of the lines naming id.
func nriEventsOf(t *testing.T, path, id string) []string {
	t.Helper()
	var out []string
	for _, l := range nriEvents(t, path) {
		f := strings.Fields(l)
		if len(f) >= 2 && f[1] == id {
			out = append(out, f[0])
		}
	}
	return out
}

// startExternalNRIPlugin runs the e2e plugin as an external plugin on the
// daemon's NRI socket; it ends with the test.
func startExternalNRIPlugin(t *testing.T, d *framework.Daemon, name, idx, events string) {
	t.Helper()
	cmd := exec.Command(nriPlugin(t), "-socket", d.NRISocket(), "-name", name, "-idx", idx, "-events", events)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// TestNRIPluginAdjustsContainersAndSeesEventsInOrder: a plugin the daemon
// starts from its plugin directory adjusts a container before it is made
// (env, a bind mount, the memory limit) and keeps its memory limit through
// UpdateContainerResources; it and an external plugin that connects later
// (synchronised with the running pod and container) see every lifecycle
// event of the pod and container once, in order.
func TestNRIPluginAdjustsContainersAndSeesEventsInOrder(t *testing.T) {
	e := newNRIEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("nri")
	cfg := framework.NewContainerConfig("adjusted", framework.BusyboxImageRef, "sleep", "3600")
	cfg.Labels[nriAdjustLabel] = "true"
	id := e.run(podID, podCfg, cfg)
	plain := e.run(podID, podCfg, framework.NewContainerConfig("plain", framework.BusyboxImageRef, "sleep", "3600"))

	const script = "echo $NRI_E2E_PLUGIN; cat /nri-e2e/hello; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
	out, _, code := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "sh", "-c", script)
	if want := "pre\nfrom-nri\n67108864\n"; code != 0 || out != want {
		t.Errorf("adjusted container: exit %d, output %q, want %q", code, out, want)
	}
	out, _, _ = framework.ExecSyncOrFail(t, rc, plain, 10*time.Second, "sh", "-c", "echo \"[$NRI_E2E_PLUGIN]\"; test -e /nri-e2e || echo no-mount")
	if out != "[]\nno-mount\n" {
		t.Errorf("container the plugin leaves alone: %q", out)
	}
	if got := ctrAnnotation(t, rc, id, "nri-e2e/adjusted-by"); got != "pre" {
		t.Errorf("annotation set by the plugin = %q, want pre", got)
	}

	// A plugin that connects now is synchronised with what runs.
	extEvents := filepath.Join(t.TempDir(), "ext.events")
	startExternalNRIPlugin(t, e.d, "ext", "20", extEvents)
	sync := waitNRIEvent(t, extEvents, "Synchronize", 30*time.Second)
	for _, want := range []string{"pod:" + podID, id + ":CONTAINER_RUNNING", plain + ":CONTAINER_RUNNING"} {
		if !strings.Contains(sync, want) {
			t.Errorf("external plugin's Synchronize %q lacks %s", sync, want)
		}
	}
	// Wait until the daemon delivers events to it (it is added once its
	// Synchronize returned).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var probe string
	for deadline := time.Now().Add(30 * time.Second); ; {
		pid := e.run(podID, podCfg, framework.NewContainerConfig("probe-"+framework.RandomSuffix(), framework.BusyboxImageRef, "sleep", "3600"))
		if slices.Contains(nriEventsOf(t, extEvents, pid), "CreateContainer") {
			probe = pid
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the external plugin never got an event")
		}
	}

	// The plugin keeps its memory limit through an update.
	if _, err := rc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 2 * nriMemoryLimit, CpuShares: 512},
	}); err != nil {
		t.Fatal(err)
	}
	out, _, _ = framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
	if out != "67108864\n" {
		t.Errorf("memory limit after an update the plugin overrides: %q, want 67108864", out)
	}

	for _, c := range []string{id, plain, probe} {
		if _, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	// plain and probe go with the pod.
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}

	check := func(name, path, obj string, want []string) {
		t.Helper()
		if got := nriEventsOf(t, path, obj); !slices.Equal(got, want) {
			t.Errorf("%s plugin, events of %s:\n got %q\nwant %q", name, obj, got, want)
		}
	}
	ctrAll := []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
		"UpdateContainer", "PostUpdateContainer", "StopContainer", "RemoveContainer"}
	check("pre", e.preEvents, id, ctrAll)
	check("ext", extEvents, id, []string{"UpdateContainer", "PostUpdateContainer", "StopContainer", "RemoveContainer"})
	check("pre", e.preEvents, plain, []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer", "RemoveContainer"})
	check("ext", extEvents, plain, []string{"StopContainer", "RemoveContainer"})
	check("pre", e.preEvents, podID, []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"})
	check("ext", extEvents, podID, []string{"StopPodSandbox", "RemovePodSandbox"})
}

// ctrAnnotation is an annotation of a container's OCI spec (verbose status).
func ctrAnnotation(t *testing.T, rc runtimeapi.RuntimeServiceClient, id, key string) string {
	t.Helper()
	info := framework.ContainerInfo(t, rc, id)
	spec, _ := info["runtimeSpec"].(map[string]any)
	ann, _ := spec["annotations"].(map[string]any)
	v, _ := ann[key].(string)
	return v
}

// TestNRISynchronizeAfterRestart: after a daemon restart the pre-installed
// plugin is started again and synchronised with the recovered pod and
// containers, and it is told of what happens to them afterwards.
func TestNRISynchronizeAfterRestart(t *testing.T) {
	e := newNRIEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("nri-restart")
	cfg := framework.NewContainerConfig("adjusted", framework.BusyboxImageRef, "sleep", "3600")
	cfg.Labels[nriAdjustLabel] = "true"
	id := e.run(podID, podCfg, cfg)
	exited := e.run(podID, podCfg, framework.NewContainerConfig("exits", framework.BusyboxImageRef, "true"))
	framework.WaitForContainerState(t, rc, exited, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
	// The exit reaches the plugin as a StopContainer.
	waitNRIEvent(t, e.preEvents, "StopContainer "+exited, 30*time.Second)

	if err := os.Truncate(e.preEvents, 0); err != nil {
		t.Fatal(err)
	}
	e.d.Restart()
	rc = e.rc()
	sync := waitNRIEvent(t, e.preEvents, "Synchronize", 30*time.Second)
	for _, want := range []string{"pod:" + podID, id + ":CONTAINER_RUNNING", exited + ":CONTAINER_STOPPED"} {
		if !strings.Contains(sync, want) {
			t.Errorf("Synchronize after restart %q lacks %s", sync, want)
		}
	}
	out, _, _ := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "sh", "-c", "echo $NRI_E2E_PLUGIN")
	if out != "pre\n" {
		t.Errorf("adjusted container after restart: %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	// The running container is stopped once, the exited one only removed.
	if got, want := nriEventsOf(t, e.preEvents, id), []string{"StopContainer", "RemoveContainer"}; !slices.Equal(got, want) {
		t.Errorf("events of the running container after restart: %q, want %q", got, want)
	}
	if got, want := nriEventsOf(t, e.preEvents, exited), []string{"RemoveContainer"}; !slices.Equal(got, want) {
		t.Errorf("events of the exited container after restart: %q, want %q", got, want)
	}
	if got, want := nriEventsOf(t, e.preEvents, podID), []string{"StopPodSandbox", "RemovePodSandbox"}; !slices.Equal(got, want) {
		t.Errorf("events of the pod after restart: %q, want %q", got, want)
	}
}

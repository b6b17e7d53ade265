package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestImageConfigVolumeSeeded: a VOLUME of the image config becomes a
// writable directory of the container's own, seeded with what the image has
// at that path (owner kept), and is removed with the container.
func TestImageConfigVolumeSeeded(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	rc := d.RuntimeClient()
	const img = "registry.k8s.io/cri-containerd-e2e/config:1"
	framework.PullImageOrFail(t, d, img)
	podCfg := framework.PodConfig("imgvol", framework.WithLogDirectory(t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	podID := run.GetPodSandboxId()
	defer framework.StopAndRemovePods(t, rc)

	cfg := framework.NewContainerConfig("vol", img, "sleep", "3600")
	id := framework.RunContainerOrFail(t, rc, podID, podCfg, cfg)
	out, _, code := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "cat", "/data/seed.txt")
	if code != 0 || out != "seeded from the image\n" {
		t.Fatalf("cat /data/seed.txt = %q (exit %d), want the image's content", out, code)
	}
	out, _, code = framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "sh", "-c", "stat -c %u /data/seed.txt; echo new > /data/new.txt && grep -c ' /data ' /proc/mounts")
	if code != 0 || !strings.HasPrefix(out, "33\n") || !strings.HasSuffix(out, "1\n") {
		t.Fatalf("volume check = %q (exit %d), want owner 33, writable, and a mount at /data", out, code)
	}
	volumes := filepath.Join(d.RootDir(), "containers", id, "volumes")
	entries, err := os.ReadDir(volumes)
	if err != nil || len(entries) != 1 {
		t.Fatalf("volume dirs under %s: %v %v", volumes, entries, err)
	}
	if b, err := os.ReadFile(filepath.Join(volumes, entries[0].Name(), "new.txt")); err != nil || string(b) != "new\n" {
		t.Fatalf("the container's write is not in its volume dir: %q %v", b, err)
	}
	// A second container gets its own, freshly seeded copy.
	id2 := framework.RunContainerOrFail(t, rc, podID, podCfg, framework.NewContainerConfig("vol2", img, "sleep", "3600"))
	if out, _, _ := framework.ExecSyncOrFail(t, rc, id2, 10*time.Second, "ls", "/data"); out != "seed.txt\n" {
		t.Fatalf("second container's /data = %q, want only seed.txt", out)
	}
	framework.StopContainerOrFail(t, rc, id, 0)
	framework.RemoveContainerOrFail(t, rc, id)
	if _, err := os.Stat(filepath.Join(d.RootDir(), "containers", id)); !os.IsNotExist(err) {
		t.Fatalf("container dir left after removal: %v", err)
	}
}

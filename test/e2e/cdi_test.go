package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// cdiSpec is a CDI spec of kind cri-e2e.test/dev with one device: a
// harmless device node (/dev/null under another path), an env var and a
// read-only mount of src.
func cdiSpec(device, env, src, dst string) string {
	return `{"cdiVersion":"0.6.0","kind":"cri-e2e.test/dev","devices":[{"name":"` + device + `","containerEdits":{
"deviceNodes":[{"path":"/dev/e2e-` + device + `","hostPath":"/dev/null"}],"env":["` + env + `"],
"mounts":[{"hostPath":"` + src + `","containerPath":"` + dst + `","options":["ro","bind"]}]}}]}`
}

// TestCDIDevicesInjected: devices named in CDI_devices or in cdi.k8s.io
// annotations are injected (device node, env, mount) as the spec files in
// --cdi-spec-dirs say; a spec file written while the daemon runs is picked
// up; an unknown device is InvalidArgument naming it and leaves nothing.
func TestCDIDevicesInjected(t *testing.T) {
	specDir, src := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello"), []byte("from-cdi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(specDir, "a.json"), []byte(cdiSpec("a", "CDI_A=yes", src, "/cdi-a")), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newCtrEnv(t, "--cdi-spec-dirs", specDir)
	rc := e.rc()
	podID, podCfg := e.runPod("cdi")

	byField := framework.NewContainerConfig("by-field", framework.BusyboxImageRef, "sleep", "3600")
	byField.CDIDevices = []*runtimeapi.CDIDevice{{Name: "cri-e2e.test/dev=a"}}
	id := e.run(podID, podCfg, byField)
	out, _, code := framework.ExecSyncOrFail(t, rc, id, 10*time.Second, "sh", "-c", "echo $CDI_A; cat /cdi-a/hello; test -c /dev/e2e-a && echo chardev")
	if code != 0 || out != "yes\nfrom-cdi\nchardev\n" {
		t.Errorf("container with CDI device a: exit %d, output %q", code, out)
	}

	// A spec file added while the daemon runs, asked for by annotation.
	if err := os.WriteFile(filepath.Join(specDir, "b.json"), []byte(strings.ReplaceAll(cdiSpec("b", "CDI_B=yes", src, "/cdi-b"), "cri-e2e.test/dev", "cri-e2e.test/devb")), 0o644); err != nil {
		t.Fatal(err)
	}
	byAnnotation := framework.NewContainerConfig("by-annotation", framework.BusyboxImageRef, "sleep", "3600")
	byAnnotation.Annotations["cdi.k8s.io/e2e"] = "cri-e2e.test/devb=b"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var bID string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: byAnnotation, SandboxConfig: podCfg})
		if err == nil {
			bID = resp.GetContainerId()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container with CDI device from a new spec file: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // the registry refreshes on the file event
	}
	if _, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: bID}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := framework.ExecSyncOrFail(t, rc, bID, 10*time.Second, "sh", "-c", "echo $CDI_B; test -c /dev/e2e-b && echo chardev"); code != 0 || out != "yes\nchardev\n" {
		t.Errorf("container with CDI device b: exit %d, output %q", code, out)
	}

	// Unknown device: InvalidArgument naming it, and no container left.
	before, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bad := framework.NewContainerConfig("unknown-device", framework.BusyboxImageRef, "sleep", "3600")
	bad.CDIDevices = []*runtimeapi.CDIDevice{{Name: "cri-e2e.test/dev=nope"}}
	_, err = rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "cri-e2e.test/dev=nope") {
		t.Errorf("unknown CDI device: %v, want InvalidArgument naming it", err)
	}
	after, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.GetContainers()) != len(before.GetContainers()) {
		t.Errorf("containers after the refused create: %d, before %d", len(after.GetContainers()), len(before.GetContainers()))
	}
	// The name is not left reserved: a valid create with the same name works.
	bad.CDIDevices = nil
	if _, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: bad, SandboxConfig: podCfg}); err != nil {
		t.Errorf("create with the refused container's name: %v", err)
	}
}

package server

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// TestUpdatePodSandboxResourcesRecorded: the pod's resources start as its
// config's, an update is persisted in the sandbox's containerd record and
// reported in the verbose status; an update whose record cannot be written
// fails and leaves the previous resources.
func TestUpdatePodSandboxResourcesRecorded(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cfg := podConfig("resized")
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 100}
	id := e.runPod(t, cfg)

	info := func() (res, over *runtimeapi.LinuxContainerResources) {
		t.Helper()
		resp, err := e.s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Resources *runtimeapi.LinuxContainerResources `json:"resources"`
			Overhead  *runtimeapi.LinuxContainerResources `json:"overhead"`
		}
		if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &v); err != nil {
			t.Fatal(err)
		}
		return v.Resources, v.Overhead
	}
	if res, over := info(); res.GetCpuShares() != 100 || over != nil {
		t.Fatalf("initial resources %v overhead %v, want the config's", res, over)
	}

	_, err := e.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id,
		Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512, MemoryLimitInBytes: 256 << 20},
		Overhead:  &runtimeapi.LinuxContainerResources{CpuShares: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if res, over := info(); res.GetCpuShares() != 512 || res.GetMemoryLimitInBytes() != 256<<20 || over.GetCpuShares() != 10 {
		t.Errorf("after update: resources %v overhead %v", res, over)
	}
	var md sandbox.Metadata
	if !e.ctrd.Lookup(id).Extension(t, sandbox.MetadataExtension, &md) || md.Resources.GetCpuShares() != 512 || md.Overhead.GetCpuShares() != 10 {
		t.Errorf("persisted metadata resources %v overhead %v", md.Resources, md.Overhead)
	}

	// The record cannot be written: the update fails, nothing changes.
	c := e.ctrd.Lookup(id)
	c.Mu.Lock()
	c.UpdateErrAt = c.Updates + 1
	c.Mu.Unlock()
	_, err = e.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: id,
		Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2}})
	if !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("update with a failing record write: %v", err)
	}
	if res, _ := info(); res.GetCpuShares() != 512 {
		t.Errorf("after a failed update: resources %v, want the previous ones", res)
	}
	if _, err := e.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: "nope"}); err == nil {
		t.Error("unknown sandbox accepted")
	}
}

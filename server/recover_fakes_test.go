package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// fakeSandboxOnDisk makes a sandbox as RunPodSandbox leaves it: a netns
// "mount" (a file), the pod files, and the containerd container.
func (e *testEnv) fakeSandboxOnDisk(t *testing.T, f *backendtest.State, name string, corrupt bool) (*backendtest.StateContainer, sandbox.Metadata) {
	t.Helper()
	id := newID()
	paths := sandbox.PathsFor(e.root, e.state, id)
	ns, err := e.host.NewNetNS(paths.NetNSDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := podConfig(name)
	if err := sandbox.WriteFiles(paths, cfg, sandbox.DefaultHostFiles); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(paths.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	md := sandbox.Metadata{
		Version: 1, ID: id, Name: sandboxName(cfg.GetMetadata()), Config: cfg,
		RuntimeHandler: "runc", RuntimeType: "io.containerd.runc.v2",
		NetNSPath: ns.GetPath(), IP: "10.88.0.9", CreatedAt: time.Now().UnixNano(),
		Phase: sandbox.PhaseCreated, ImageID: testPauseID,
	}
	spec := &oci.Spec{
		Version:     runtimespec.Version,
		Annotations: sandboxAnnotations(id, cfg),
		Linux: &runtimespec.Linux{Namespaces: []runtimespec.LinuxNamespace{
			{Type: runtimespec.PIDNamespace}, {Type: runtimespec.NetworkNamespace, Path: ns.GetPath()},
		}},
	}
	c := f.AddContainer(t, id, map[string]string{sandbox.LabelKind: sandbox.KindSandbox}, sandbox.MetadataExtension, &md, corrupt, spec)
	return c, md
}

// fakeContainerOnDisk makes a container of sandbox sbID as CreateContainer
// and StartContainer leave it; status nil means no status file.
func (e *testEnv) fakeContainerOnDisk(t *testing.T, f *backendtest.State, sbID, name string, corruptMD bool, status *container.Status) (*backendtest.StateContainer, container.Metadata) {
	t.Helper()
	id := newID()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testBusybox},
	}
	sbCfg := podConfig("pod-of-" + name)
	md := container.Metadata{
		Version: 1, ID: id, Name: containerName(cfg.GetMetadata(), sbCfg.GetMetadata()), SandboxID: sbID,
		Config: cfg, ImageRef: testBusyboxID, ImageName: testBusybox,
		LogPath:   filepath.Join(t.TempDir(), name+".log"),
		CreatedAt: time.Now().UnixNano(),
	}
	dir := filepath.Join(e.root, "containers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(e.state, "containers", id, "io"), 0o700); err != nil {
		t.Fatal(err)
	}
	if status != nil {
		c := container.New(md, dir, container.Status{})
		if err := c.Update(func(st *container.Status) error { *st = *status; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	spec := &oci.Spec{Version: runtimespec.Version, Annotations: containerAnnotations(id, name, sbID, sbCfg, testBusybox)}
	c := f.AddContainer(t, id, map[string]string{sandbox.LabelKind: sandbox.KindContainer, sandbox.LabelSandboxID: sbID},
		container.MetadataExtension, &md, corruptMD, spec)
	return c, md
}

// stopBackground ends the goroutines syncState started.
func stopBackground(s *Service) { _ = s.Close() }

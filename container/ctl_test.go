package container

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
)

// A controller driven by the backendtest fakes, with one ready sandbox.

const (
	testBusybox   = "docker.io/library/busybox:latest"
	testBusyboxID = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	testPodID     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

type ctlEnv struct {
	c      *Controller
	o      Options
	ctrd   *backendtest.Ctrd
	root   string
	state  string
	pod    *sandbox.Sandbox
	mu     sync.Mutex
	events []runtimeapi.ContainerEventType
}

func testPodConfig() *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid-web"},
		Hostname:     "web",
		LogDirectory: "/var/log/pods/default_web",
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func newCtlEnv(t *testing.T) *ctlEnv {
	t.Helper()
	cfg := config.Default()
	cfg.RootDir, cfg.StateDir = t.TempDir(), t.TempDir()
	cfg.DefaultRuntimeName = "runc"
	cfg.Runtimes = map[string]config.Runtime{"runc": {Type: "io.containerd.runc.v2"}}
	e := &ctlEnv{ctrd: backendtest.NewCtrd(), root: cfg.RootDir, state: cfg.StateDir}
	images := backendtest.NewImages()
	images.Add(image.Image{ID: testBusyboxID, RepoTags: []string{testBusybox},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGQUIT"}}}, testBusybox)
	e.ctrd.AddImage(testBusyboxID, testBusybox)
	// Every container reports a user in its spec.
	e.ctrd.Configure = func(c *backendtest.Container) {
		c.OCISpec = &oci.Spec{Process: &runtimespec.Process{User: runtimespec.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{3000}}}}
	}
	sbs := sandbox.NewStore()
	e.pod = sandbox.New(sandbox.Metadata{Version: 1, ID: testPodID, Name: "web_default_uid-web_0", Config: testPodConfig(),
		NetNSPath: "/var/run/netns/test"})
	e.pod.SetReady(42)
	if err := sbs.Add(e.pod); err != nil {
		t.Fatal(err)
	}
	e.o = Options{
		Config: cfg,
		Deps: backend.Deps{Containerd: e.ctrd, Images: images, Network: &backendtest.Network{}, Host: backendtest.NewHost(),
			Clock: fixedClock{time.Unix(1700000000, 0)}},
		Store:     NewStore(),
		Names:     registrar.New(),
		Sandboxes: sbs,
		SpecGen:   spec.NewGenerator(),
		OnEvent: func(_ *Container, k runtimeapi.ContainerEventType) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.events = append(e.events, k)
		},
	}
	e.c = NewController(e.o)
	return e
}

func (e *ctlEnv) takeEvents() []runtimeapi.ContainerEventType {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.events
	e.events = nil
	return out
}

func testCtrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testBusybox},
		LogPath:  name + ".log",
		Labels:   map[string]string{"ctr": name},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func (e *ctlEnv) create(t *testing.T, name string) *Container {
	t.Helper()
	c, err := e.c.Create(context.Background(), CreateRequest{SandboxID: testPodID, Config: testCtrConfig(name)})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

// startWithPID creates and starts container "app" with the PID namespace
// mode pid.
func (e *ctlEnv) startWithPID(t *testing.T, ctx context.Context, pid runtimeapi.NamespaceMode) *Container {
	t.Helper()
	cfg := testCtrConfig("app")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: pid}}
	c, err := e.c.Create(ctx, CreateRequest{SandboxID: testPodID, Config: cfg})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := e.c.Start(ctx, c); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

// containerDirs lists the per-container directories under the root and state dirs.
func (e *ctlEnv) containerDirs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, base := range []string{e.root, e.state} {
		entries, err := os.ReadDir(filepath.Join(base, "containers"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, d := range entries {
			out = append(out, filepath.Join(base, "containers", d.Name()))
		}
	}
	return out
}

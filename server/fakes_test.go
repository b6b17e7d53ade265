package server

import (
	"context"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
	"github.com/cri-containerd/cri-containerd/stats"
)

// ---- the service ----

const (
	testPauseImage = "registry.k8s.io/pause:3.10"
	testPauseID    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testBusybox    = "docker.io/library/busybox:latest"
	testBusyboxID  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// testEnv is a Service wired to fakes, with temporary root and state dirs.
type testEnv struct {
	s      *Service
	ctrd   *backendtest.Ctrd
	images *backendtest.Images
	net    *backendtest.Network
	host   *backendtest.Host
	root   string
	state  string
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	cfg := config.Default()
	cfg.RootDir = t.TempDir()
	cfg.StateDir = t.TempDir()
	cfg.SandboxImage = testPauseImage
	cfg.DefaultRuntimeName = "runc"
	cfg.Runtimes = map[string]config.Runtime{
		"runc": {Type: "io.containerd.runc.v2"},
		"kata": {Type: "io.containerd.kata.v2", Snapshotter: "devmapper"},
	}
	e := &testEnv{
		ctrd:   backendtest.NewCtrd(),
		images: backendtest.NewImages(),
		net:    &backendtest.Network{},
		host:   backendtest.NewHost(),
		root:   cfg.RootDir,
		state:  cfg.StateDir,
	}
	e.images.Add(image.Image{
		ID: testPauseID, RepoTags: []string{testPauseImage},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}},
	}, testPauseImage)
	e.images.Add(image.Image{
		ID: testBusyboxID, RepoTags: []string{testBusybox},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGQUIT"}},
	}, testBusybox)
	e.ctrd.AddImage(testPauseID, testPauseImage, testBusyboxID, testBusybox)
	e.s = &Service{
		config:  cfg,
		metrics: NewMetrics(prometheus.NewRegistry()),
		events:  newEventBroadcaster(),
		stats:   stats.NewCollector(),
		specGen: spec.NewGenerator(),

		sandboxes:    sandbox.NewStore(),
		sandboxNames: registrar.New(),

		containers:     container.NewStore(),
		containerNames: registrar.New(),

		deps: backend.Deps{
			Containerd: e.ctrd,
			Images:     e.images,
			Network:    e.net,
			Host:       e.host,
			Clock:      backend.SystemClock{},
		},
	}
	// Every container reports a user in its spec; killing a task delivers
	// its exit as the event monitor would.
	e.ctrd.Configure = func(c *backendtest.Container) {
		c.OCISpec = &oci.Spec{Process: &runtimespec.Process{User: runtimespec.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{3000}}}}
		c.OnKill = func() {
			if sb, err := e.s.sandboxes.Get(c.ID()); err == nil && sb.ID == c.ID() {
				e.s.handleSandboxExit(context.Background(), sb, 137, time.Now())
				return
			}
			e.s.ctrs().HandleExit(context.Background(), c.ID(), 137, time.Now())
		}
	}
	return e
}

// files lists everything below the root and state dirs except the
// top-level directories themselves (sandboxes, netns, containers).
func (e *testEnv) files(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, base := range []string{e.root, e.state} {
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			if rel == "." || (d.IsDir() && !containsSep(rel)) {
				return nil
			}
			out = append(out, p)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func containsSep(p string) bool { return filepath.Dir(p) != "." }

func podConfig(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: "/var/log/pods/default_" + name,
		Labels:       map[string]string{"app": name},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
}

// runPod runs a pod sandbox and fails the test on error.
func (e *testEnv) runPod(t *testing.T, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	return resp.GetPodSandboxId()
}

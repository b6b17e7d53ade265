package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/spec"
)

const (
	testPauseImage = "registry.k8s.io/pause:3.10"
	testPauseID    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

type runEnv struct {
	c    *Controller
	o    Options
	ctrd *backendtest.Ctrd
	net  *backendtest.Network
	host *backendtest.Host

	mu     sync.Mutex
	events []runtimeapi.ContainerEventType
}

// takeEvents returns the events emitted so far and forgets them.
func (e *runEnv) takeEvents() []runtimeapi.ContainerEventType {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.events
	e.events = nil
	return out
}

func newRunEnv(t *testing.T) *runEnv {
	t.Helper()
	cfg := config.Default()
	cfg.RootDir, cfg.StateDir = t.TempDir(), t.TempDir()
	cfg.SandboxImage = testPauseImage
	cfg.DefaultRuntimeName = "runc"
	cfg.Runtimes = map[string]config.Runtime{"runc": {Type: "io.containerd.runc.v2"}}
	e := &runEnv{ctrd: backendtest.NewCtrd(), net: &backendtest.Network{}, host: backendtest.NewHost()}
	images := backendtest.NewImages()
	images.Add(image.Image{ID: testPauseID, RepoTags: []string{testPauseImage},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}}}, testPauseImage)
	e.ctrd.AddImage(testPauseID, testPauseImage)
	e.o = Options{
		Config: cfg,
		Deps: backend.Deps{Containerd: e.ctrd, Images: images, Network: e.net, Host: e.host,
			Clock: fixedClock{time.Unix(1700000000, 0)}},
		Store:   NewStore(),
		Names:   registrar.New(),
		SpecGen: spec.NewGenerator(),
		OnEvent: func(_ *Sandbox, k runtimeapi.ContainerEventType) {
			e.mu.Lock()
			e.events = append(e.events, k)
			e.mu.Unlock()
		},
	}
	e.c = NewController(e.o)
	return e
}

func testPod(name string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		Linux:    &runtimeapi.LinuxPodSandboxConfig{},
	}
}

func TestControllerRun(t *testing.T) {
	e := newRunEnv(t)
	id, err := e.c.Run(context.Background(), testPod("web"), "")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sb, err := e.o.Store.Get(id)
	if err != nil {
		t.Fatalf("sandbox not stored: %v", err)
	}
	md := sb.GetMetadata()
	if md.Phase != PhaseCreated || md.IP != "10.88.0.5" || md.CreatedAt != time.Unix(1700000000, 0).UnixNano() {
		t.Errorf("metadata = phase %v ip %q created %d", md.Phase, md.IP, md.CreatedAt)
	}
	if got := fmt.Sprint(e.takeEvents()); got != "[CONTAINER_CREATED_EVENT CONTAINER_STARTED_EVENT]" {
		t.Errorf("events = %s", got)
	}
	if _, err := e.c.Run(context.Background(), testPod("web"), ""); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Run with the same metadata: %v, want AlreadyExists", err)
	}
}

// TestControllerRunRollsBack: a pause task that fails to start undoes every
// step: no containerd container, no netns, no shm, no stored sandbox, the
// name released and the network torn down.
func TestControllerRunRollsBack(t *testing.T) {
	e := newRunEnv(t)
	e.ctrd.Configure = func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected }
	if _, err := e.c.Run(context.Background(), testPod("web"), ""); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("Run: %v, want the injected failure", err)
	}
	if ids := e.ctrd.LiveIDs(); len(ids) != 0 {
		t.Errorf("containerd containers left: %v", ids)
	}
	for _, ns := range e.host.CreatedNetNS() {
		if !ns.Removed {
			t.Errorf("netns %s left", ns.GetPath())
		}
	}
	if m := e.host.MountedShm(); len(m) != 0 {
		t.Errorf("shm left mounted: %v", m)
	}
	if l := e.o.Store.List(); len(l) != 0 {
		t.Errorf("sandboxes stored: %d", len(l))
	}
	if setups, removes := e.net.Calls(); len(setups) != 1 || len(removes) != 1 {
		t.Errorf("CNI calls: %d ADD, %d DEL; want 1 and 1", len(setups), len(removes))
	}
	e.ctrd.Configure = nil
	if _, err := e.c.Run(context.Background(), testPod("web"), ""); err != nil {
		t.Errorf("the name was not released: %v", err)
	}
}

// TestRegressionShimLeftByRunCutDuringTaskCreate: containerd killed while
// it created the pause task (the short chaos campaign of 2026-12-06 19:13)
// left a shim the restarted containerd could not load and forgot; the
// failed RunPodSandbox rolled back its containerd objects but never got a
// RemovePodSandbox to reap that shim. A failed run whose task create was
// attempted reaps shims serving its ID, after its container is deleted; a
// run that failed before that does not scan for any.
func TestRegressionShimLeftByRunCutDuringTaskCreate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(e *runEnv)
		wantReap  bool
	}{
		{"task create cut", func(e *runEnv) {
			e.ctrd.Configure = func(c *backendtest.Container) { c.NewTaskErr = backendtest.ErrInjected }
		}, true},
		{"task start failed", func(e *runEnv) {
			e.ctrd.Configure = func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected }
		}, true},
		{"no containerd container", func(e *runEnv) { e.ctrd.NewContainerErr = backendtest.ErrInjected }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t)
			var reaped []string
			var liveAtReap []string
			e.o.ReapShims = func(id, handler string) {
				reaped = append(reaped, id+"/"+handler)
				liveAtReap = e.ctrd.LiveIDs()
			}
			e.c = NewController(e.o)
			tc.configure(e)
			if _, err := e.c.Run(context.Background(), testPod("web"), ""); !errors.Is(err, backendtest.ErrInjected) {
				t.Fatalf("Run: %v, want the injected failure", err)
			}
			if got := len(reaped) == 1; got != tc.wantReap || len(reaped) > 1 {
				t.Fatalf("shim reaps %v, want one: %v", reaped, tc.wantReap)
			}
			if tc.wantReap {
				if !strings.HasSuffix(reaped[0], "/runc") {
					t.Errorf("reaped %q, want the pod's handler runc", reaped[0])
				}
				if len(liveAtReap) != 0 {
					t.Errorf("shims reaped while containerd still held %v", liveAtReap)
				}
			}
		})
	}
}

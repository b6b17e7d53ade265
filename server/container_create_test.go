package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ctrConfig(name string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: testBusybox},
		LogPath:  name + ".log",
		Labels:   map[string]string{"ctr": name},
		Linux:    &runtimeapi.LinuxContainerConfig{},
	}
}

func (e *testEnv) createContainerErr(pod string, cfg *runtimeapi.ContainerConfig) (string, error) {
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg}
	if sb, err := e.s.sandboxes.Get(pod); err == nil {
		req.SandboxConfig = sb.GetMetadata().Config
	}
	resp, err := e.s.CreateContainer(context.Background(), req)
	return resp.GetContainerId(), err
}

func (e *testEnv) createContainer(t *testing.T, pod string, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id, err := e.createContainerErr(pod, cfg)
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	return id
}

func (e *testEnv) startContainerErr(id string) error {
	_, err := e.s.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id})
	return err
}

func (e *testEnv) startContainer(t *testing.T, id string) {
	t.Helper()
	if err := e.startContainerErr(id); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
}

// containerDirs lists the per-container directories under the root and state dirs.
func (e *testEnv) containerDirs(t *testing.T) []string {
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

// TestCreateContainerSuccess: the handler wires the controller (see the
// container package's tests for the steps and their rollback): the
// container is in the service's store and its creation is a CRI event.
func TestCreateContainerSuccess(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	events, cancel := e.s.events.subscribe()
	defer cancel()

	id := e.createContainer(t, pod, ctrConfig("app"))
	c, err := e.s.containers.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Status().State(); st != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("state = %v", st)
	}
	if c.SandboxID != pod || c.ImageRef != testBusyboxID {
		t.Errorf("metadata = %+v", c.Metadata)
	}
	if _, err := os.Stat(filepath.Join(e.root, "containers", id, "status")); err != nil {
		t.Errorf("status checkpoint: %v", err)
	}
	if n := e.s.containerNames.Len(); n != 1 {
		t.Errorf("%d container names reserved", n)
	}
	if got := drainEvents(events); len(got) != 1 || got[0] != runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT {
		t.Errorf("events = %v", got)
	}
}

func TestCreateContainerPreconditions(t *testing.T) {
	noName := ctrConfig("app")
	noName.Metadata.Name = ""
	noImage := ctrConfig("app")
	noImage.Image = nil
	for _, tc := range []struct {
		name     string
		pod      func(e *testEnv, pod string) string
		cfg      *runtimeapi.ContainerConfig
		wantCode codes.Code
	}{
		{name: "sandbox not ready", cfg: ctrConfig("app"), wantCode: codes.FailedPrecondition,
			pod: func(e *testEnv, pod string) string {
				if err := e.stopPod(pod); err != nil {
					panic(err)
				}
				return pod
			}},
		{name: "sandbox not found", cfg: ctrConfig("app"), wantCode: codes.NotFound,
			pod: func(*testEnv, string) string { return "fedcba9876543210" }},
		{name: "no name", cfg: noName, wantCode: codes.InvalidArgument},
		{name: "no image", cfg: noImage, wantCode: codes.InvalidArgument},
		{name: "duplicate name", cfg: ctrConfig("dup"), wantCode: codes.AlreadyExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			pod := e.runPod(t, podConfig("web"))
			e.createContainer(t, pod, ctrConfig("dup"))
			if tc.pod != nil {
				pod = tc.pod(e, pod)
			}
			made := len(e.ctrd.Created)
			_, err := e.createContainerErr(pod, tc.cfg)
			if code := status.Code(toGRPC(err)); code != tc.wantCode {
				t.Fatalf("err = %v (%v), want %v", err, code, tc.wantCode)
			}
			if n := e.s.containerNames.Len(); n != 1 {
				t.Errorf("%d container names reserved, want only the first container's", n)
			}
			if len(e.ctrd.Created) != made || len(e.s.containers.List()) != 1 || len(e.containerDirs(t)) != 1 {
				t.Error("work was done for a refused request")
			}
		})
	}
}

func TestStartContainer(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	id := e.createContainer(t, pod, ctrConfig("app"))
	events, cancel := e.s.events.subscribe()
	defer cancel()

	e.startContainer(t, id)
	c, _ := e.s.containers.Get(id)
	st := c.Status()
	if st.State() != runtimeapi.ContainerState_CONTAINER_RUNNING || st.Pid != 1000 || st.StartedAt == 0 || st.Starting {
		t.Errorf("status = %+v", st)
	}
	_, _, tasks := e.ctrd.Lookup(id).State()
	if len(tasks) != 1 {
		t.Fatalf("%d tasks", len(tasks))
	}
	if started, deleted, _ := tasks[0].State(); !started || deleted {
		t.Errorf("task started %v deleted %v", started, deleted)
	}
	if c.IO() == nil {
		t.Error("container IO not set")
	}
	if got := drainEvents(events); len(got) != 1 || got[0] != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
		t.Errorf("events = %v", got)
	}
	// Starting twice is refused.
	if err := e.startContainerErr(id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: err = %v, want FailedPrecondition", err)
	}
}

func TestStartContainerPreconditions(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	id := e.createContainer(t, pod, ctrConfig("app"))
	if err := e.startContainerErr("0000000000000000"); !errdefs.IsNotFound(err) {
		t.Errorf("missing container: err = %v, want NotFound", err)
	}
	if err := e.stopPod(pod); err != nil {
		t.Fatal(err)
	}
	if err := e.startContainerErr(id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("sandbox not ready: err = %v, want FailedPrecondition", err)
	}
	c, _ := e.s.containers.Get(id)
	if st := c.Status().State(); st != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("state = %v, want still CREATED", st)
	}
	if _, _, tasks := e.ctrd.Lookup(id).State(); len(tasks) != 0 {
		t.Errorf("%d tasks made", len(tasks))
	}
}

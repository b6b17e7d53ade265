package container

import (
	"context"
	"errors"

	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
)

func TestCreateSuccess(t *testing.T) {
	e := newCtlEnv(t)
	c := e.create(t, "app")
	if got, err := e.o.Store.Get(c.ID); err != nil || got != c {
		t.Fatalf("store: %v", err)
	}
	st := c.Status()
	if st.State() != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt != time.Unix(1700000000, 0).UnixNano() {
		t.Errorf("status = %+v", st)
	}
	if c.SandboxID != testPodID || c.ImageRef != testBusyboxID || c.ImageName != testBusybox || c.StopSignal != "SIGQUIT" {
		t.Errorf("metadata = %+v", c.Metadata)
	}
	if c.Name != "app_web_default_uid-web_0" {
		t.Errorf("name %q", c.Name)
	}
	if want := filepath.Join(testPodConfig().GetLogDirectory(), "app.log"); c.LogPath != want {
		t.Errorf("log path %q, want %q", c.LogPath, want)
	}
	if saved, ok, err := LoadStatus(filepath.Join(e.root, "containers", c.ID)); err != nil || !ok || saved.CreatedAt != st.CreatedAt {
		t.Errorf("status checkpoint %+v (ok %v, err %v)", saved, ok, err)
	}
	if n := e.o.Names.Len(); n != 1 {
		t.Errorf("%d container names reserved", n)
	}
	if got := e.takeEvents(); len(got) != 1 || got[0] != runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT {
		t.Errorf("events = %v", got)
	}
}

// TestCreateRollback fails each step of Create in turn: the name is
// released, the container's directory removed and a containerd container
// that was made deleted with its snapshot.
func TestCreateRollback(t *testing.T) {
	for _, tc := range []struct {
		name    string
		inject  func(e *ctlEnv) (undo func())
		cfg     func(*runtimeapi.ContainerConfig)
		wantErr error
		// ctr: the containerd container had been made.
		ctr bool
	}{
		{
			name:    "image lookup",
			cfg:     func(c *runtimeapi.ContainerConfig) { c.Image.Image = "docker.io/library/nope:latest" },
			wantErr: errdefs.ErrNotFound,
		},
		{
			name: "containerd image record",
			inject: func(e *ctlEnv) func() {
				e.ctrd.GetImageErr = backendtest.ErrInjected
				return func() { e.ctrd.GetImageErr = nil }
			},
			wantErr: backendtest.ErrInjected,
		},
		{
			name: "spec generation",
			cfg: func(c *runtimeapi.ContainerConfig) {
				// Privileged in an unprivileged sandbox.
				c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Privileged: true}
			},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name: "NewContainer",
			inject: func(e *ctlEnv) func() {
				e.ctrd.NewContainerErr = backendtest.ErrInjected
				return func() { e.ctrd.NewContainerErr = nil }
			},
			wantErr: backendtest.ErrInjected,
		},
		{
			name: "name in use",
			inject: func(e *ctlEnv) func() {
				name := Name(testCtrConfig("app").GetMetadata(), testPodConfig().GetMetadata())
				if err := e.o.Names.Reserve(name, "other"); err != nil {
					panic(err)
				}
				return func() { e.o.Names.ReleaseByID("other") }
			},
			wantErr: errdefs.ErrAlreadyExists,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			undo := func() {}
			if tc.inject != nil {
				undo = tc.inject(e)
			}
			cfg := testCtrConfig("app")
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			_, err := e.c.Create(context.Background(), CreateRequest{SandboxID: testPodID, Config: cfg})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got := e.o.Store.List(); len(got) != 0 {
				t.Errorf("store holds %d containers", len(got))
			}
			undo()
			if n := e.o.Names.Len(); n != 0 {
				t.Errorf("%d container names still reserved", n)
			}
			if dirs := e.containerDirs(t); len(dirs) != 0 {
				t.Errorf("container dirs left behind: %v", dirs)
			}
			for _, c := range e.ctrd.Created {
				if deleted, cleanup, _ := c.State(); !deleted || !cleanup {
					t.Errorf("containerd container %s: deleted %v with snapshot cleanup %v", c.ID(), deleted, cleanup)
				}
			}
			if made := len(e.ctrd.Created); tc.ctr != (made == 1) || made > 1 {
				t.Errorf("%d containerd containers made, want %v", made, tc.ctr)
			}
			if got := e.takeEvents(); len(got) != 0 {
				t.Errorf("events %v for a container that was never made", got)
			}
			// The name was released.
			e.create(t, "app")
		})
	}
}

// TestCreatePreconditions: a missing or not-ready sandbox and a PID
// namespace target that does not run are refused before any work.
func TestCreatePreconditions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(e *ctlEnv) CreateRequest
		wantErr error
	}{
		{"sandbox not found", func(*ctlEnv) CreateRequest {
			return CreateRequest{SandboxID: "fedcba9876543210", Config: testCtrConfig("app")}
		}, errdefs.ErrNotFound},
		{"sandbox not ready", func(e *ctlEnv) CreateRequest {
			e.pod.SetNotReady(0, time.Now())
			return CreateRequest{SandboxID: testPodID, Config: testCtrConfig("app")}
		}, errdefs.ErrFailedPrecondition},
		{"PID target not running", func(e *ctlEnv) CreateRequest {
			target := e.create(t, "target")
			cfg := testCtrConfig("app")
			cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
				Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target.ID}}
			return CreateRequest{SandboxID: testPodID, Config: cfg}
		}, errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCtlEnv(t)
			r := tc.setup(e)
			before, names := len(e.ctrd.Created), e.o.Names.Len()
			if _, err := e.c.Create(context.Background(), r); !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(e.ctrd.Created) != before || e.o.Names.Len() != names {
				t.Error("work was done for a refused request")
			}
			if dirs := e.containerDirs(t); len(dirs) != names {
				t.Errorf("container dirs: %v", dirs)
			}
		})
	}
}

// TestWithUserOf: the user the spec resolved is recorded in the metadata
// by the last spec option, before the metadata is marshalled into the
// containerd record (one call makes the record complete).
func TestWithUserOf(t *testing.T) {
	md := Metadata{SupplementalGroups: []int64{9}}
	s := &oci.Spec{Process: &runtimespec.Process{User: runtimespec.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{3000, 3001}}}}
	if err := withUserOf(&md)(context.Background(), nil, nil, s); err != nil {
		t.Fatal(err)
	}
	if md.UID != 1000 || md.GID != 2000 || !slices.Equal(md.SupplementalGroups, []int64{3000, 3001}) {
		t.Errorf("user %d:%d %v", md.UID, md.GID, md.SupplementalGroups)
	}
	if err := withUserOf(&md)(context.Background(), nil, nil, &oci.Spec{}); err != nil || md.UID != 1000 {
		t.Errorf("a spec without a process changed the user: %+v, %v", md, err)
	}
}

package server

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// drainEvents returns the types of the events queued on ch.
func drainEvents(ch chan *runtimeapi.ContainerEventResponse) []runtimeapi.ContainerEventType {
	var out []runtimeapi.ContainerEventType
	for {
		select {
		case e := <-ch:
			out = append(out, e.GetContainerEventType())
		default:
			return out
		}
	}
}

// configureCtr adds f to the tuning of new containers; the returned func undoes it.
func (e *testEnv) configureCtr(f func(*backendtest.Container)) func() {
	e.ctrd.Mu.Lock()
	defer e.ctrd.Mu.Unlock()
	prev := e.ctrd.Configure
	e.ctrd.Configure = func(c *backendtest.Container) {
		prev(c)
		f(c)
	}
	return func() {
		e.ctrd.Mu.Lock()
		defer e.ctrd.Mu.Unlock()
		e.ctrd.Configure = prev
	}
}

func TestRunPodSandboxSuccess(t *testing.T) {
	e := newTestEnv(t)
	events, cancel := e.s.events.subscribe()
	defer cancel()
	cfg := podConfig("web")
	cfg.PortMappings = []*runtimeapi.PortMapping{{HostPort: 8080, ContainerPort: 80}}
	id := e.runPod(t, cfg)

	sb, err := e.s.sandboxes.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if st, pid := sb.State(); st != sandbox.StateReady || pid != 1000 {
		t.Errorf("state = %v pid %d, want ready with the task's pid 1000", st, pid)
	}
	md := sb.GetMetadata()
	paths := sandbox.PathsFor(e.root, e.state, id)
	if want := filepath.Join(paths.NetNSDir, "cni-0"); md.NetNSPath != want {
		t.Errorf("NetNSPath = %q, want %q", md.NetNSPath, want)
	}
	if md.IP != "10.88.0.5" || md.Phase != sandbox.PhaseCreated || md.RuntimeHandler != "runc" || md.ImageID != testPauseID {
		t.Errorf("metadata = %+v", md)
	}
	setups, removes := e.net.Calls()
	if len(setups) != 1 || setups[0].ID != id || setups[0].Path != md.NetNSPath || len(removes) != 0 {
		t.Errorf("CNI setups %+v removes %+v", setups, removes)
	}
	ctr := e.ctrd.Lookup(id)
	if ctr == nil {
		t.Fatal("no containerd container was created with the sandbox id")
	}
	var persisted sandbox.Metadata
	if !ctr.Extension(t, sandbox.MetadataExtension, &persisted) || persisted.Phase != sandbox.PhaseCreated || persisted.IP != "10.88.0.5" || persisted.NetNSPath != md.NetNSPath {
		t.Errorf("persisted metadata = %+v", persisted)
	}
	if _, _, tasks := ctr.State(); len(tasks) != 1 {
		t.Fatalf("%d tasks", len(tasks))
	} else if started, deleted, _ := tasks[0].State(); !started || deleted {
		t.Errorf("pause task started %v deleted %v", started, deleted)
	}
	for _, f := range []string{paths.HostnamePath(), paths.HostsPath(), paths.ResolvConfPath()} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("pod file: %v", err)
		}
	}
	if b, _ := os.ReadFile(paths.HostnamePath()); string(b) != "web\n" {
		t.Errorf("hostname file = %q", b)
	}
	if got := e.host.MountedShm(); len(got) != 1 || got[0] != paths.ShmPath() {
		t.Errorf("shm mounts = %v, want %s", got, paths.ShmPath())
	}
	if got := drainEvents(events); len(got) != 2 || got[0] != runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT || got[1] != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT {
		t.Errorf("events = %v", got)
	}
}

func TestRunPodSandboxHostNamespaces(t *testing.T) {
	e := newTestEnv(t)
	cfg := podConfig("host")
	cfg.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		Network: runtimeapi.NamespaceMode_NODE, Ipc: runtimeapi.NamespaceMode_NODE,
	}}
	id := e.runPod(t, cfg)
	sb, _ := e.s.sandboxes.Get(id)
	if md := sb.GetMetadata(); md.NetNSPath != "" || md.IP != "" {
		t.Errorf("host network sandbox has netns %q ip %q", md.NetNSPath, md.IP)
	}
	setups, _ := e.net.Calls()
	if len(e.host.CreatedNetNS()) != 0 || len(setups) != 0 || len(e.host.MountedShm()) != 0 {
		t.Errorf("netns %d, CNI setups %d, shm mounts %v: want none", len(e.host.CreatedNetNS()), len(setups), e.host.MountedShm())
	}
}

func TestRunPodSandboxRuntimeHandler(t *testing.T) {
	e := newTestEnv(t)
	resp, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("kata"), RuntimeHandler: "kata"})
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := e.s.sandboxes.Get(resp.GetPodSandboxId())
	if md := sb.GetMetadata(); md.RuntimeHandler != "kata" || md.RuntimeType != "io.containerd.kata.v2" {
		t.Errorf("handler %q type %q", md.RuntimeHandler, md.RuntimeType)
	}
}

func TestRunPodSandboxInvalid(t *testing.T) {
	noUID := podConfig("p")
	noUID.Metadata.Uid = ""
	noName := podConfig("p")
	noName.Metadata.Name = ""
	noNamespace := podConfig("p")
	noNamespace.Metadata.Namespace = ""
	noMetadata := podConfig("p")
	noMetadata.Metadata = nil
	for _, tc := range []struct {
		name    string
		req     *runtimeapi.RunPodSandboxRequest
		wantErr error
	}{
		{"no config", &runtimeapi.RunPodSandboxRequest{}, errdefs.ErrInvalidArgument},
		{"no metadata", &runtimeapi.RunPodSandboxRequest{Config: noMetadata}, errdefs.ErrInvalidArgument},
		{"no name", &runtimeapi.RunPodSandboxRequest{Config: noName}, errdefs.ErrInvalidArgument},
		{"no namespace", &runtimeapi.RunPodSandboxRequest{Config: noNamespace}, errdefs.ErrInvalidArgument},
		{"no uid", &runtimeapi.RunPodSandboxRequest{Config: noUID}, errdefs.ErrInvalidArgument},
		{"unknown runtime handler", &runtimeapi.RunPodSandboxRequest{Config: podConfig("p"), RuntimeHandler: "gvisor"}, errdefs.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			_, err := e.s.RunPodSandbox(context.Background(), tc.req)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if code := status.Code(toGRPC(err)); code != codes.InvalidArgument {
				t.Errorf("gRPC code = %v", code)
			}
			if n := e.s.sandboxNames.Len(); n != 0 {
				t.Errorf("%d names reserved", n)
			}
			if len(e.images.Ensured) != 0 || len(e.ctrd.Created) != 0 || len(e.host.CreatedNetNS()) != 0 {
				t.Error("work was done for an invalid request")
			}
		})
	}
}

func TestRunPodSandboxDuplicateName(t *testing.T) {
	e := newTestEnv(t)
	first := e.runPod(t, podConfig("web"))
	_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("web")})
	if !errdefs.IsAlreadyExists(err) || status.Code(toGRPC(err)) != codes.AlreadyExists {
		t.Fatalf("err = %v, want AlreadyExists", err)
	}
	if !strings.Contains(err.Error(), first) {
		t.Errorf("error %q does not name the holder %s", err, first)
	}
	if got := e.s.sandboxes.List(); len(got) != 1 || got[0].ID != first {
		t.Errorf("store = %v", got)
	}
	if len(e.ctrd.Created) != 1 || len(e.host.CreatedNetNS()) != 1 {
		t.Errorf("the duplicate did work: %d containers, %d netns", len(e.ctrd.Created), len(e.host.CreatedNetNS()))
	}
	// Another attempt is another name.
	attempt := podConfig("web")
	attempt.Metadata.Attempt = 1
	e.runPod(t, attempt)
}

// TestRunPodSandboxRollback fails each step of RunPodSandbox in turn and
// checks that everything done before it was undone, and that the name is
// free again.
func TestRunPodSandboxRollback(t *testing.T) {
	for _, tc := range []struct {
		name string
		// inject makes the step fail; the returned func makes it work again.
		inject  func(t *testing.T, e *testEnv) (undo func())
		cfg     func(*runtimeapi.PodSandboxConfig)
		wantErr error
		wantMsg string
		// What had been done, and must have been undone.
		netns, cniAdd, ctr, task bool
	}{
		{
			name: "image ensure",
			inject: func(t *testing.T, e *testEnv) func() {
				e.images.EnsureErr = backendtest.ErrInjected
				return func() { e.images.EnsureErr = nil }
			},
			wantErr: backendtest.ErrInjected,
		},
		{
			name: "containerd image record",
			inject: func(t *testing.T, e *testEnv) func() {
				e.ctrd.GetImageErr = backendtest.ErrInjected
				return func() { e.ctrd.GetImageErr = nil }
			},
			wantErr: backendtest.ErrInjected,
		},
		{
			name: "netns create",
			inject: func(t *testing.T, e *testEnv) func() {
				e.host.NewNetNSErr = backendtest.ErrInjected
				return func() { e.host.NewNetNSErr = nil }
			},
			wantErr: backendtest.ErrInjected,
		},
		{
			name: "pod files",
			inject: func(t *testing.T, e *testEnv) func() {
				// A file where the sandboxes directory belongs.
				blocker := filepath.Join(e.root, "sandboxes")
				if err := os.WriteFile(blocker, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return func() { _ = os.Remove(blocker) }
			},
			wantErr: syscall.ENOTDIR,
			netns:   true,
		},
		{
			name: "shm mount",
			inject: func(t *testing.T, e *testEnv) func() {
				e.host.MountShmErr = backendtest.ErrInjected
				return func() { e.host.MountShmErr = nil }
			},
			wantErr: backendtest.ErrInjected,
			netns:   true,
		},
		{
			name: "sandbox spec",
			inject: func(t *testing.T, e *testEnv) func() {
				good, _ := e.images.Get(testPauseImage)
				bad := good
				bad.Config = ocispec.Image{} // no entrypoint nor cmd
				e.images.Add(bad, testPauseImage)
				return func() { e.images.Add(good, testPauseImage) }
			},
			wantErr: errdefs.ErrInvalidArgument,
			netns:   true,
		},
		{
			name: "NewContainer",
			inject: func(t *testing.T, e *testEnv) func() {
				e.ctrd.NewContainerErr = backendtest.ErrInjected
				return func() { e.ctrd.NewContainerErr = nil }
			},
			wantErr: backendtest.ErrInjected,
			netns:   true,
		},
		{
			name: "CNI options",
			cfg: func(c *runtimeapi.PodSandboxConfig) {
				c.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "lots"}
			},
			wantErr: errdefs.ErrInvalidArgument,
			netns:   true, ctr: true,
		},
		{
			name: "CNI setup",
			inject: func(t *testing.T, e *testEnv) func() {
				e.net.SetupErr = backendtest.ErrInjected
				return func() { e.net.SetupErr = nil }
			},
			wantErr: backendtest.ErrInjected,
			// The pause task is created while CNI ADD runs.
			netns: true, cniAdd: true, ctr: true, task: true,
		},
		{
			name: "pod IPs (no eth0 in the CNI result)",
			inject: func(t *testing.T, e *testEnv) func() {
				e.net.Result = &gocni.Result{Interfaces: map[string]*gocni.Config{
					"eth1": {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("10.88.0.9")}}},
				}}
				return func() { e.net.Result = nil }
			},
			wantMsg: "no IP on eth0",
			netns:   true, cniAdd: true, ctr: true, task: true,
		},
		{
			name: "NewTask",
			inject: func(t *testing.T, e *testEnv) func() {
				return e.configureCtr(func(c *backendtest.Container) { c.NewTaskErr = backendtest.ErrInjected })
			},
			wantErr: backendtest.ErrInjected,
			netns:   true, cniAdd: true, ctr: true,
		},
		{
			name: "task Start",
			inject: func(t *testing.T, e *testEnv) func() {
				return e.configureCtr(func(c *backendtest.Container) { c.TaskStartErr = backendtest.ErrInjected })
			},
			wantErr: backendtest.ErrInjected,
			netns:   true, cniAdd: true, ctr: true, task: true,
		},
		{
			name: "final metadata update (network result and phase)",
			inject: func(t *testing.T, e *testEnv) func() {
				return e.configureCtr(func(c *backendtest.Container) { c.UpdateErrAt = 1 })
			},
			wantErr: backendtest.ErrInjected,
			netns:   true, cniAdd: true, ctr: true, task: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			events, cancel := e.s.events.subscribe()
			defer cancel()
			undo := func() {}
			if tc.inject != nil {
				undo = tc.inject(t, e)
			}
			cfg := podConfig("web")
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			switch {
			case err == nil:
				t.Fatal("RunPodSandbox succeeded")
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantMsg):
				t.Fatalf("err = %v, want %q", err, tc.wantMsg)
			}

			if got := e.s.sandboxes.List(); len(got) != 0 {
				t.Errorf("store holds %d sandboxes", len(got))
			}
			if n := e.s.sandboxNames.Len(); n != 0 {
				t.Errorf("%d names still reserved", n)
			}
			if got := drainEvents(events); len(got) != 0 {
				t.Errorf("events %v for a sandbox that was never made", got)
			}

			nss := e.host.CreatedNetNS()
			if tc.netns != (len(nss) == 1) || len(nss) > 1 {
				t.Errorf("%d netns created, want %v", len(nss), tc.netns)
			}
			for _, ns := range nss {
				if !ns.Removed {
					t.Errorf("netns %s not removed", ns.GetPath())
				}
				if _, err := os.Stat(filepath.Dir(ns.GetPath())); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("netns dir left behind: %v", err)
				}
			}

			setups, removes := e.net.Calls()
			if tc.cniAdd != (len(setups) == 1) || len(setups) > 1 {
				t.Errorf("%d CNI ADDs, want %v", len(setups), tc.cniAdd)
			}
			if len(removes) != len(setups) {
				t.Errorf("CNI ADDs %+v but DELs %+v", setups, removes)
			}
			for i := range min(len(setups), len(removes)) {
				if setups[i] != removes[i] {
					t.Errorf("CNI DEL %+v differs from its ADD %+v", removes[i], setups[i])
				}
				if len(nss) == 1 && setups[i].Path != nss[0].GetPath() {
					t.Errorf("CNI ADD path %q, netns is %q", setups[i].Path, nss[0].GetPath())
				}
			}

			if tc.ctr != (len(e.ctrd.Created) == 1) || len(e.ctrd.Created) > 1 {
				t.Errorf("%d containerd containers created, want %v", len(e.ctrd.Created), tc.ctr)
			}
			var tasks []*backendtest.Task
			for _, c := range e.ctrd.Created {
				deleted, cleanup, ts := c.State()
				if !deleted || !cleanup {
					t.Errorf("containerd container %s: deleted %v with snapshot cleanup %v", c.ID(), deleted, cleanup)
				}
				if len(setups) == 1 && setups[0].ID != c.ID() {
					t.Errorf("CNI ADD for %q, container is %q", setups[0].ID, c.ID())
				}
				tasks = append(tasks, ts...)
			}
			if tc.task != (len(tasks) == 1) || len(tasks) > 1 {
				t.Errorf("%d tasks created, want %v", len(tasks), tc.task)
			}
			for _, task := range tasks {
				if _, deleted, kill := task.State(); !deleted || !kill {
					t.Errorf("pause task: deleted %v with process kill %v", deleted, kill)
				}
			}
			if got := e.host.MountedShm(); len(got) != 0 {
				t.Errorf("shm still mounted: %v", got)
			}

			undo()
			if left := e.files(t); len(left) != 0 {
				t.Errorf("files left behind: %v", left)
			}
			// The name was released: the same pod can be run now.
			e.runPod(t, podConfig("web"))
		})
	}
}

func TestEnsureImageGetsSandboxImage(t *testing.T) {
	e := newTestEnv(t)
	e.images = backendtest.NewImages()
	e.s.deps.Images = e.images
	_, err := e.s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v, want NotFound from the image store", err)
	}
	if len(e.images.Ensured) != 1 || e.images.Ensured[0] != testPauseImage {
		t.Errorf("ensured %v, want the configured sandbox image", e.images.Ensured)
	}
}

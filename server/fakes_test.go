package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/registrar"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/spec"
	"github.com/cri-containerd/cri-containerd/stats"
)

// Fakes of the dependencies (package backend): containerd (client, containers,
// tasks, images, snapshots, leases), the image store, CNI, network
// namespaces and shm mounts. Each records what was done to it so that tests
// can assert that a failed RPC undid every step it had taken.

// errInjected is the failure the tests inject.
var errInjected = errors.New("injected failure")

// sameFunc reports whether opt is the function want (containerd's options
// are funcs; the fakes identify the ones that matter by code pointer).
func sameFunc(opt, want any) bool {
	return reflect.ValueOf(opt).Pointer() == reflect.ValueOf(want).Pointer()
}

// ---- containerd ----

type fakeImage struct {
	containerd.Image
	name string
}

func (i *fakeImage) Name() string { return i.name }

type fakeCtrd struct {
	// Containerd is nil: the calls the lifecycle RPCs do not make panic.
	backend.Containerd

	mu sync.Mutex
	// images are the containerd image records, by name.
	images map[string]*fakeImage
	// newContainerErr fails NewContainer.
	newContainerErr error
	// getImageErr fails GetImage.
	getImageErr error
	// configure, if set, tunes every new container before it is returned.
	configure func(*fakeContainer)
	// created are all containers ever created, in order.
	created []*fakeContainer
	// live are the containers not deleted, by ID.
	live map[string]*fakeContainer

	leaseDeletes []string
}

func newFakeCtrd() *fakeCtrd {
	return &fakeCtrd{images: map[string]*fakeImage{}, live: map[string]*fakeContainer{}}
}

func (f *fakeCtrd) addImage(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		f.images[n] = &fakeImage{name: n}
	}
}

func (f *fakeCtrd) NewContainer(ctx context.Context, id string, opts ...containerd.NewContainerOpts) (containerd.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.newContainerErr != nil {
		return nil, f.newContainerErr
	}
	if _, ok := f.live[id]; ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	c := &fakeContainer{owner: f, id: id, nopts: len(opts), record: containers.Container{ID: id}}
	if f.configure != nil {
		f.configure(c)
	}
	f.created = append(f.created, c)
	f.live[id] = c
	return c, nil
}

func (f *fakeCtrd) GetImage(ctx context.Context, ref string) (containerd.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getImageErr != nil {
		return nil, f.getImageErr
	}
	if img, ok := f.images[ref]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeCtrd) SnapshotService(string) snapshots.Snapshotter { return fakeSnapshotter{} }

func (f *fakeCtrd) LeasesService() leases.Manager { return &fakeLeases{owner: f} }

func (f *fakeCtrd) container(id string) *fakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.created {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (f *fakeCtrd) liveIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.live {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

type fakeSnapshotter struct{ snapshots.Snapshotter }

func (fakeSnapshotter) Walk(context.Context, snapshots.WalkFunc, ...string) error { return nil }

type fakeLeases struct {
	leases.Manager
	owner *fakeCtrd
}

func (l *fakeLeases) Create(_ context.Context, opts ...leases.Opt) (leases.Lease, error) {
	var lease leases.Lease
	for _, o := range opts {
		if err := o(&lease); err != nil {
			return leases.Lease{}, err
		}
	}
	return lease, nil
}

func (l *fakeLeases) Delete(_ context.Context, lease leases.Lease, _ ...leases.DeleteOpt) error {
	l.owner.mu.Lock()
	defer l.owner.mu.Unlock()
	if lease.Labels[image.TemporaryLeaseLabel] != "" {
		return nil // a create's own lease
	}
	l.owner.leaseDeletes = append(l.owner.leaseDeletes, lease.ID)
	return fmt.Errorf("lease %q: %w", lease.ID, errdefs.ErrNotFound)
}

type fakeContainer struct {
	containerd.Container
	owner *fakeCtrd
	id    string
	nopts int

	mu sync.Mutex
	// record holds what Update wrote (extensions).
	record containers.Container
	// updateErrAt fails the n-th Update call (1-based; 0 never).
	updateErrAt int
	updates     int
	newTaskErr  error
	deleteErr   error
	// taskStartErr fails Start of the tasks made by NewTask.
	taskStartErr error
	// onKill runs when a task of this container is killed (the exit event).
	onKill func()
	spec   *oci.Spec

	task            *fakeTask
	tasks           []*fakeTask
	deleted         bool
	snapshotCleanup bool
}

func (c *fakeContainer) ID() string { return c.id }

func (c *fakeContainer) Update(ctx context.Context, opts ...containerd.UpdateContainerOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	if c.updates == c.updateErrAt {
		return fmt.Errorf("update %d: %w", c.updates, errInjected)
	}
	rec := c.record
	rec.Extensions = make(map[string]typeurl.Any, len(c.record.Extensions))
	for k, v := range c.record.Extensions {
		rec.Extensions[k] = v
	}
	for _, o := range opts {
		if err := o(ctx, nil, &rec); err != nil {
			return err
		}
	}
	c.record = rec
	return nil
}

func (c *fakeContainer) Delete(ctx context.Context, opts ...containerd.DeleteOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleteErr != nil {
		return c.deleteErr
	}
	if c.deleted {
		return fmt.Errorf("container %q: %w", c.id, errdefs.ErrNotFound)
	}
	if c.task != nil {
		return fmt.Errorf("container %q has a task: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	for _, o := range opts {
		if sameFunc(o, containerd.WithSnapshotCleanup) {
			c.snapshotCleanup = true
		}
	}
	c.deleted = true
	c.owner.mu.Lock()
	delete(c.owner.live, c.id)
	c.owner.mu.Unlock()
	return nil
}

func (c *fakeContainer) NewTask(ctx context.Context, _ cio.Creator, _ ...containerd.NewTaskOpts) (containerd.Task, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.newTaskErr != nil {
		return nil, c.newTaskErr
	}
	if c.task != nil {
		return nil, fmt.Errorf("task of %q: %w", c.id, errdefs.ErrAlreadyExists)
	}
	t := &fakeTask{ctr: c, pid: uint32(1000 + len(c.tasks)), startErr: c.taskStartErr}
	c.task = t
	c.tasks = append(c.tasks, t)
	return t, nil
}

func (c *fakeContainer) Task(context.Context, cio.Attach) (containerd.Task, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.task == nil {
		return nil, fmt.Errorf("no task of %q: %w", c.id, errdefs.ErrNotFound)
	}
	return c.task, nil
}

func (c *fakeContainer) Spec(context.Context) (*oci.Spec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spec == nil {
		return nil, fmt.Errorf("spec of %q: %w", c.id, errdefs.ErrNotFound)
	}
	return c.spec, nil
}

// extension decodes the extension name last written by Update into v.
func (c *fakeContainer) extension(t *testing.T, name string, v any) bool {
	t.Helper()
	c.mu.Lock()
	a, ok := c.record.Extensions[name]
	c.mu.Unlock()
	if !ok {
		return false
	}
	got, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatalf("decoding extension %s: %v", name, err)
	}
	reflect.ValueOf(v).Elem().Set(reflect.ValueOf(got).Elem())
	return true
}

func (c *fakeContainer) state() (deleted, snapshotCleanup bool, tasks []*fakeTask) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleted, c.snapshotCleanup, append([]*fakeTask(nil), c.tasks...)
}

type fakeTask struct {
	containerd.Task
	ctr      *fakeContainer
	pid      uint32
	startErr error

	mu          sync.Mutex
	started     bool
	deleted     bool
	processKill bool
	kills       []syscall.Signal
}

func (t *fakeTask) Pid() uint32 { return t.pid }

func (t *fakeTask) Start(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.startErr != nil {
		return t.startErr
	}
	t.started = true
	return nil
}

func (t *fakeTask) Kill(_ context.Context, sig syscall.Signal, _ ...containerd.KillOpts) error {
	t.mu.Lock()
	t.kills = append(t.kills, sig)
	t.mu.Unlock()
	t.ctr.mu.Lock()
	onKill := t.ctr.onKill
	t.ctr.mu.Unlock()
	if onKill != nil {
		// The exit event arrives asynchronously, as containerd's would.
		go onKill()
	}
	return nil
}

func (t *fakeTask) Delete(_ context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deleted {
		return nil, fmt.Errorf("task %d: %w", t.pid, errdefs.ErrNotFound)
	}
	for _, o := range opts {
		if sameFunc(o, containerd.WithProcessKill) {
			t.processKill = true
		}
	}
	t.deleted = true
	t.ctr.mu.Lock()
	if t.ctr.task == t {
		t.ctr.task = nil
	}
	t.ctr.mu.Unlock()
	return containerd.NewExitStatus(0, t.ctr.record.CreatedAt, nil), nil
}

func (t *fakeTask) killed() []syscall.Signal {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]syscall.Signal(nil), t.kills...)
}

func (t *fakeTask) state() (started, deleted, processKill bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.started, t.deleted, t.processKill
}

// ---- images ----

type fakeImages struct {
	mu        sync.Mutex
	images    map[string]image.Image
	ensureErr error
	ensured   []string
}

func (f *fakeImages) add(img image.Image, refs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range append(refs, img.ID) {
		f.images[r] = img
	}
}

func (f *fakeImages) Get(ref string) (image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if img, ok := f.images[ref]; ok {
		return img, nil
	}
	return image.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeImages) EnsureImage(ctx context.Context, ref string, _ *image.Credentials, _ ...image.PullOpt) (image.Image, error) {
	f.mu.Lock()
	f.ensured = append(f.ensured, ref)
	err := f.ensureErr
	f.mu.Unlock()
	if err != nil {
		return image.Image{}, err
	}
	return f.Get(ref)
}

// ---- CNI ----

type netCall struct {
	id, path string
	nopts    int
}

type fakeNetwork struct {
	mu       sync.Mutex
	setupErr error
	// removeErrs fails that many Remove calls.
	removeErrs int
	// result overrides the Setup result (default: eth0 with 10.88.0.5).
	result  *gocni.Result
	setups  []netCall
	removes []netCall
}

func (f *fakeNetwork) Setup(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups = append(f.setups, netCall{id, path, len(opts)})
	if f.setupErr != nil {
		return nil, f.setupErr
	}
	if f.result != nil {
		return f.result, nil
	}
	return &gocni.Result{Interfaces: map[string]*gocni.Config{
		"eth0": {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("10.88.0.5")}}},
	}}, nil
}

func (f *fakeNetwork) Remove(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes = append(f.removes, netCall{id, path, len(opts)})
	if f.removeErrs > 0 {
		f.removeErrs--
		return fmt.Errorf("cni del: %w", errInjected)
	}
	return nil
}

func (f *fakeNetwork) Status() error               { return nil }
func (f *fakeNetwork) Config() *gocni.ConfigResult { return nil }

func (f *fakeNetwork) calls() (setups, removes []netCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]netCall(nil), f.setups...), append([]netCall(nil), f.removes...)
}

// ---- network namespaces and shm ----

// fakeHost stands in for network namespace and tmpfs mounts: a namespace is
// a plain file in the sandbox's netns directory, an shm "mount" a directory
// remembered as mounted.
type fakeHost struct {
	mu          sync.Mutex
	newNetNSErr error
	mountShmErr error
	netns       map[string]*fakeNetNS
	created     []*fakeNetNS
	shm         map[string]bool
	shmMounts   int
}

func newFakeHost() *fakeHost {
	return &fakeHost{netns: map[string]*fakeNetNS{}, shm: map[string]bool{}}
}

type fakeNetNS struct {
	path    string
	removed bool
	host    *fakeHost
}

func (n *fakeNetNS) GetPath() string { return n.path }

func (n *fakeNetNS) Closed() (bool, error) {
	_, err := os.Stat(n.path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func (n *fakeNetNS) Remove() error {
	n.host.mu.Lock()
	n.removed = true
	n.host.mu.Unlock()
	if err := os.Remove(n.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// NewNetNS creates the directory, as netns.NewNetNS does, before failing.
func (h *fakeHost) NewNetNS(dir string) (backend.NetNS, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if h.newNetNSErr != nil {
		return nil, h.newNetNSErr
	}
	p := filepath.Join(dir, fmt.Sprintf("cni-%d", len(h.created)))
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		return nil, err
	}
	ns := &fakeNetNS{path: p, host: h}
	h.netns[p] = ns
	h.created = append(h.created, ns)
	return ns, nil
}

func (h *fakeHost) LoadNetNS(path string) backend.NetNS {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ns, ok := h.netns[path]; ok {
		return ns
	}
	return &fakeNetNS{path: path, host: h}
}

// MountShm creates the directory, as backend.OS.MountShm does, before failing.
func (h *fakeHost) MountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mountShmErr != nil {
		return h.mountShmErr
	}
	h.shm[path] = true
	h.shmMounts++
	return nil
}

// UnmountShm is idempotent and removes the directory, as backend.OS.UnmountShm.
func (h *fakeHost) UnmountShm(path string) error {
	h.mu.Lock()
	delete(h.shm, path)
	h.mu.Unlock()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (h *fakeHost) mountedShm() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for p := range h.shm {
		out = append(out, p)
	}
	return out
}

func (h *fakeHost) createdNetNS() []*fakeNetNS {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*fakeNetNS(nil), h.created...)
}

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
	ctrd   *fakeCtrd
	images *fakeImages
	net    *fakeNetwork
	host   *fakeHost
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
		ctrd:   newFakeCtrd(),
		images: &fakeImages{images: map[string]image.Image{}},
		net:    &fakeNetwork{},
		host:   newFakeHost(),
		root:   cfg.RootDir,
		state:  cfg.StateDir,
	}
	e.images.add(image.Image{
		ID: testPauseID, RepoTags: []string{testPauseImage},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Entrypoint: []string{"/pause"}}},
	}, testPauseImage)
	e.images.add(image.Image{
		ID: testBusyboxID, RepoTags: []string{testBusybox},
		Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}, StopSignal: "SIGQUIT"}},
	}, testBusybox)
	e.ctrd.addImage(testPauseID, testPauseImage, testBusyboxID, testBusybox)
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
	e.ctrd.configure = func(c *fakeContainer) {
		c.spec = &oci.Spec{Process: &runtimespec.Process{User: runtimespec.User{UID: 1000, GID: 2000, AdditionalGids: []uint32{3000}}}}
		c.onKill = func() {
			if sb, err := e.s.sandboxes.Get(c.id); err == nil && sb.ID == c.id {
				e.s.handleSandboxExit(context.Background(), sb, 137, time.Now())
				return
			}
			e.s.handleContainerExit(context.Background(), c.id, 0, 137, time.Now())
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

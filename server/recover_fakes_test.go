package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// Fakes of containerd as recovery and the event monitor see it
// (backend.Containerd): listed containers with their records, their tasks, and
// the task event stream. Unlike containerd, a task call can be made to hang
// (a hung shim).

// stateFake is the listing and event half of backend.Containerd.
type stateFake struct {
	mu   sync.Mutex
	ctrs []*stCtr
	subs map[chan *events.Envelope]struct{}
	// subscribes counts Subscribe calls.
	subscribes int
	// release unblocks hung task calls (closed at test end).
	release chan struct{}
	// inflight are the contexts of the task calls in progress
	// (Container.Task); maxInflight is the most of them with a live context.
	inflight    []context.Context
	maxInflight int
}

func newStateFake(t *testing.T) *stateFake {
	f := &stateFake{subs: map[chan *events.Envelope]struct{}{}, release: make(chan struct{})}
	t.Cleanup(func() { close(f.release) })
	return f
}

func (f *stateFake) Containers(ctx context.Context, filters ...string) ([]containerd.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []containerd.Container
	for _, c := range f.ctrs {
		c.mu.Lock()
		kind, deleted := c.rec.Labels[sandbox.LabelKind], c.deleted
		c.mu.Unlock()
		if deleted {
			continue
		}
		ok := len(filters) == 0
		for _, flt := range filters {
			if strings.Contains(flt, fmt.Sprintf("%q", kind)) {
				ok = true
			}
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *stateFake) Subscribe(ctx context.Context, _ ...string) (<-chan *events.Envelope, <-chan error) {
	ch := make(chan *events.Envelope, 64)
	errCh := make(chan error, 1)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.subscribes++
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	return ch, errCh
}

// publishExit delivers a task exit to the subscribers of the moment, as
// containerd does (events are not replayed to later subscribers).
func (f *stateFake) publishExit(id string, pid, code uint32) {
	a, err := typeurl.MarshalAny(&eventtypes.TaskExit{ContainerID: id, ID: id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.Now()})
	if err != nil {
		panic(err)
	}
	e := &events.Envelope{Timestamp: time.Now(), Namespace: "k8s.io", Topic: "/tasks/exit", Event: a}
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// enter counts a task call in progress; calls whose context already ended
// (abandoned by a caller that timed out) do not count.
func (f *stateFake) enter(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight = append(f.inflight, ctx)
	n := 0
	for _, c := range f.inflight {
		if c.Err() == nil {
			n++
		}
	}
	f.maxInflight = max(f.maxInflight, n)
}

func (f *stateFake) leave(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.inflight {
		if c == ctx {
			f.inflight = append(f.inflight[:i], f.inflight[i+1:]...)
			return
		}
	}
}

func (f *stateFake) get(id string) *stCtr {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.id == id {
			return c
		}
	}
	return nil
}

// stCtr is a containerd container of stateFake.
type stCtr struct {
	containerd.Container
	owner *stateFake
	id    string

	mu      sync.Mutex
	rec     containers.Container
	task    *stTask
	deleted bool
	// hang makes Task block until ctx ends or the test ends.
	hang bool
}

func (c *stCtr) ID() string { return c.id }

func (c *stCtr) Info(context.Context, ...containerd.InfoOpts) (containers.Container, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec, nil
}

func (c *stCtr) Extensions(context.Context) (map[string]typeurl.Any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.Extensions, nil
}

func (c *stCtr) Labels(context.Context) (map[string]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rec.Labels, nil
}

func (c *stCtr) Spec(context.Context) (*oci.Spec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := typeurl.UnmarshalAny(c.rec.Spec)
	if err != nil {
		return nil, err
	}
	return v.(*oci.Spec), nil
}

func (c *stCtr) Update(ctx context.Context, opts ...containerd.UpdateContainerOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.rec
	rec.Extensions = map[string]typeurl.Any{}
	for k, v := range c.rec.Extensions {
		rec.Extensions[k] = v
	}
	for _, o := range opts {
		if err := o(ctx, nil, &rec); err != nil {
			return err
		}
	}
	c.rec = rec
	return nil
}

func (c *stCtr) Delete(context.Context, ...containerd.DeleteOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deleted {
		return fmt.Errorf("container %q: %w", c.id, errdefs.ErrNotFound)
	}
	if c.task != nil {
		return fmt.Errorf("container %q has a task: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	c.deleted = true
	return nil
}

func (c *stCtr) Task(ctx context.Context, _ cio.Attach) (containerd.Task, error) {
	c.owner.enter(ctx)
	defer c.owner.leave(ctx)
	c.mu.Lock()
	hang, t := c.hang, c.task
	c.mu.Unlock()
	if hang {
		select {
		case <-c.owner.release:
		case <-ctx.Done():
		}
		return nil, fmt.Errorf("shim of %s: %w", c.id, context.DeadlineExceeded)
	}
	if t == nil {
		return nil, fmt.Errorf("no task of %q: %w", c.id, errdefs.ErrNotFound)
	}
	return t, nil
}

func (c *stCtr) isDeleted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleted
}

// stTask is the task of an stCtr.
type stTask struct {
	containerd.Task
	ctr *stCtr
	pid uint32

	mu       sync.Mutex
	status   containerd.ProcessStatus
	exitCode uint32
	exitedAt time.Time
	deleted  bool
	kills    []syscall.Signal
	// exitAfterStatus: the process exits (with this code) just after the
	// first Status call answered "running".
	exitAfterStatus *uint32
	// onDelete, when set, runs at the start of Delete.
	onDelete func()
}

func (t *stTask) Pid() uint32 { return t.pid }

func (t *stTask) Status(context.Context) (containerd.Status, error) {
	t.mu.Lock()
	st := containerd.Status{Status: t.status, ExitStatus: t.exitCode, ExitTime: t.exitedAt}
	exit := t.exitAfterStatus
	t.exitAfterStatus = nil
	t.mu.Unlock()
	if exit != nil {
		t.exit(*exit)
	}
	return st, nil
}

// exit stops the process and publishes its exit.
func (t *stTask) exit(code uint32) {
	t.mu.Lock()
	t.status, t.exitCode, t.exitedAt = containerd.Stopped, code, time.Now()
	t.mu.Unlock()
	t.ctr.owner.publishExit(t.ctr.id, t.pid, code)
}

func (t *stTask) Kill(_ context.Context, sig syscall.Signal, _ ...containerd.KillOpts) error {
	t.mu.Lock()
	t.kills = append(t.kills, sig)
	t.mu.Unlock()
	go t.exit(128 + uint32(sig))
	return nil
}

func (t *stTask) Delete(context.Context, ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	t.mu.Lock()
	hook := t.onDelete
	t.mu.Unlock()
	if hook != nil {
		hook()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.deleted {
		return nil, fmt.Errorf("task %d: %w", t.pid, errdefs.ErrNotFound)
	}
	t.deleted = true
	t.ctr.mu.Lock()
	if t.ctr.task == t {
		t.ctr.task = nil
	}
	t.ctr.mu.Unlock()
	return containerd.NewExitStatus(t.exitCode, t.exitedAt, nil), nil
}

func (t *stTask) state() (deleted bool, kills []syscall.Signal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deleted, append([]syscall.Signal(nil), t.kills...)
}

// addCtr adds a containerd container with a record made of kind, the
// metadata extension (corrupted when corrupt) and spec.
func (f *stateFake) addCtr(t *testing.T, id, kind, ext string, md any, corrupt bool, spec *oci.Spec, labels map[string]string) *stCtr {
	t.Helper()
	a, err := typeurl.MarshalAny(md)
	if err != nil {
		t.Fatal(err)
	}
	if corrupt {
		a = &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: []byte(`{"id": "` + id + `", "config": {not json`)}
	}
	sa, err := typeurl.MarshalAny(spec)
	if err != nil {
		t.Fatal(err)
	}
	l := map[string]string{sandbox.LabelKind: kind}
	for k, v := range labels {
		l[k] = v
	}
	c := &stCtr{owner: f, id: id, rec: containers.Container{
		ID:         id,
		Labels:     l,
		Extensions: map[string]typeurl.Any{ext: a},
		Spec:       sa,
		Runtime:    containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		CreatedAt:  time.Now(),
	}}
	f.mu.Lock()
	f.ctrs = append(f.ctrs, c)
	f.mu.Unlock()
	return c
}

// startTask gives c a task in the given state.
func (c *stCtr) startTask(pid uint32, status containerd.ProcessStatus, code uint32) *stTask {
	t := &stTask{ctr: c, pid: pid, status: status, exitCode: code}
	if status == containerd.Stopped {
		t.exitedAt = time.Now()
	}
	c.mu.Lock()
	c.task = t
	c.mu.Unlock()
	return t
}

// fakeSandboxOnDisk makes a sandbox as RunPodSandbox leaves it: a netns
// "mount" (a file), the pod files, and the containerd container.
func (e *testEnv) fakeSandboxOnDisk(t *testing.T, f *stateFake, name string, corrupt bool) (*stCtr, sandbox.Metadata) {
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
	c := f.addCtr(t, id, sandbox.KindSandbox, sandbox.MetadataExtension, &md, corrupt, spec, nil)
	return c, md
}

// fakeContainerOnDisk makes a container of sandbox sbID as CreateContainer
// and StartContainer leave it; status nil means no status file.
func (e *testEnv) fakeContainerOnDisk(t *testing.T, f *stateFake, sbID, name string, corruptMD bool, status *container.Status) (*stCtr, container.Metadata) {
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
	c := f.addCtr(t, id, sandbox.KindContainer, container.MetadataExtension, &md, corruptMD, spec,
		map[string]string{sandbox.LabelSandboxID: sbID})
	return c, md
}

// waitFor polls cond for up to a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stopBackground ends the goroutines syncState started.
func stopBackground(s *Service) { _ = s.Close() }

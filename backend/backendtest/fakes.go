package backendtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	ctrdsandbox "github.com/containerd/containerd/v2/core/sandbox"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	gocni "github.com/containerd/go-cni"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/image"
)

// Fakes of the dependencies (package backend): containerd (client, containers,
// tasks, images, snapshots, leases), the image store, CNI, network
// namespaces and shm mounts. Each records what was done to it so that tests
// can assert that a failed RPC undid every step it had taken.

// ErrInjected is the failure the tests inject.
var ErrInjected = errors.New("injected failure")

// SameFunc reports whether opt is the function want (containerd's options
// are funcs; the fakes identify the ones that matter by code pointer).
func SameFunc(opt, want any) bool {
	return reflect.ValueOf(opt).Pointer() == reflect.ValueOf(want).Pointer()
}

// ---- containerd ----

// Image is a containerd image record.
type Image struct {
	containerd.Image
	name string
}

func (i *Image) Name() string { return i.name }

// Ctrd is containerd as the create, start and stop paths see it. Set the
// *Err fields to inject failures; Created and Live record what exists.
type Ctrd struct {
	// Containerd is nil: the calls the lifecycle RPCs do not make panic.
	backend.Containerd

	Mu sync.Mutex
	// images are the containerd image records, by name.
	images map[string]*Image
	// NewContainerErr fails NewContainer.
	NewContainerErr error
	// GetImageErr fails GetImage.
	GetImageErr error
	// configure, if set, tunes every new container before it is returned.
	Configure func(*Container)
	// created are all containers ever created, in order.
	Created []*Container
	// live are the containers not deleted, by ID.
	Live map[string]*Container

	LeaseDeletes []string
	// TaskCreates are the requests TaskService().Create got.
	TaskCreates []*tasks.CreateTaskRequest
	// Records are the containerd sandbox records, by ID; RecordCreateErr
	// fails their creation.
	Records         map[string]ctrdsandbox.Sandbox
	RecordCreateErr error
}

// NewCtrd is a containerd with no images and no containers.
func NewCtrd() *Ctrd {
	return &Ctrd{images: map[string]*Image{}, Live: map[string]*Container{}, Records: map[string]ctrdsandbox.Sandbox{}}
}

func (f *Ctrd) AddImage(names ...string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for _, n := range names {
		f.images[n] = &Image{name: n}
	}
}

func (f *Ctrd) NewContainer(ctx context.Context, id string, opts ...containerd.NewContainerOpts) (containerd.Container, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.NewContainerErr != nil {
		return nil, f.NewContainerErr
	}
	if _, ok := f.Live[id]; ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	c := &Container{owner: f, id: id, NOpts: len(opts), Record: containers.Container{ID: id, Snapshotter: "overlayfs", SnapshotKey: id}}
	if f.Configure != nil {
		f.Configure(c)
	}
	f.Created = append(f.Created, c)
	f.Live[id] = c
	return c, nil
}

// SandboxStore is containerd's sandbox records (Create, Get, List and Delete).
func (f *Ctrd) SandboxStore() ctrdsandbox.Store { return sandboxStore{owner: f} }

type sandboxStore struct {
	ctrdsandbox.Store
	owner *Ctrd
}

func (s sandboxStore) Create(_ context.Context, sb ctrdsandbox.Sandbox) (ctrdsandbox.Sandbox, error) {
	s.owner.Mu.Lock()
	defer s.owner.Mu.Unlock()
	if s.owner.RecordCreateErr != nil {
		return ctrdsandbox.Sandbox{}, s.owner.RecordCreateErr
	}
	if _, ok := s.owner.Records[sb.ID]; ok {
		return ctrdsandbox.Sandbox{}, fmt.Errorf("sandbox %q: %w", sb.ID, errdefs.ErrAlreadyExists)
	}
	sb.CreatedAt = time.Unix(1700000000, 0)
	s.owner.Records[sb.ID] = sb
	return sb, nil
}

func (s sandboxStore) Get(_ context.Context, id string) (ctrdsandbox.Sandbox, error) {
	s.owner.Mu.Lock()
	defer s.owner.Mu.Unlock()
	sb, ok := s.owner.Records[id]
	if !ok {
		return ctrdsandbox.Sandbox{}, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return sb, nil
}

// List ignores the filters.
func (s sandboxStore) List(context.Context, ...string) ([]ctrdsandbox.Sandbox, error) {
	s.owner.Mu.Lock()
	defer s.owner.Mu.Unlock()
	var out []ctrdsandbox.Sandbox
	for _, sb := range s.owner.Records {
		out = append(out, sb)
	}
	return out, nil
}

func (s sandboxStore) Delete(_ context.Context, id string) error {
	s.owner.Mu.Lock()
	defer s.owner.Mu.Unlock()
	if _, ok := s.owner.Records[id]; !ok {
		return fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	delete(s.owner.Records, id)
	return nil
}

// TaskService is the raw task API; Delete deletes a live container's task
// (without WithProcessKill), the other calls are not faked.
func (f *Ctrd) TaskService() tasks.TasksClient { return taskService{owner: f} }

type taskService struct {
	tasks.TasksClient
	owner *Ctrd
}

// Create makes a task of a live container as Container.NewTask does; the
// request is kept in the owner's TaskCreates.
func (ts taskService) Create(ctx context.Context, r *tasks.CreateTaskRequest, _ ...grpc.CallOption) (*tasks.CreateTaskResponse, error) {
	ts.owner.Mu.Lock()
	c := ts.owner.Live[r.GetContainerID()]
	ts.owner.TaskCreates = append(ts.owner.TaskCreates, r)
	ts.owner.Mu.Unlock()
	if c == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("container %s: %w", r.GetContainerID(), errdefs.ErrNotFound))
	}
	t, err := c.NewTask(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &tasks.CreateTaskResponse{ContainerID: r.GetContainerID(), Pid: t.Pid()}, nil
}

// activeTask is the live task of live container id, or a gRPC NotFound.
func (ts taskService) activeTask(id string) (*Task, error) {
	c := ts.live(id)
	if c == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound))
	}
	c.Mu.Lock()
	t := c.ActiveTask
	c.Mu.Unlock()
	if t == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", id, errdefs.ErrNotFound))
	}
	return t, nil
}

// Start starts the live task of a container (TaskStartErr fails it).
func (ts taskService) Start(ctx context.Context, r *tasks.StartRequest, _ ...grpc.CallOption) (*tasks.StartResponse, error) {
	t, err := ts.activeTask(r.GetContainerID())
	if err != nil {
		return nil, err
	}
	if err := t.Start(ctx); err != nil {
		return nil, err
	}
	return &tasks.StartResponse{Pid: t.Pid()}, nil
}

// Kill signals the live task of a container, as the container's Task's Kill.
func (ts taskService) Kill(ctx context.Context, r *tasks.KillRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	return killVia(ctx, ts.live(r.GetContainerID()), r)
}

// Wait waits for the live task of a container, as the container's Task's Wait.
func (ts taskService) Wait(ctx context.Context, r *tasks.WaitRequest, _ ...grpc.CallOption) (*tasks.WaitResponse, error) {
	return waitVia(ctx, ts.live(r.GetContainerID()), r)
}

// live is the owner's live container id (nil: none).
func (ts taskService) live(id string) *Container {
	ts.owner.Mu.Lock()
	defer ts.owner.Mu.Unlock()
	return ts.owner.Live[id]
}

// taskOwner is a fake container whose task the raw task service reaches.
type taskOwner interface {
	Task(context.Context, cio.Attach) (containerd.Task, error)
}

// taskOf is the task of fake container c (nil: no container id), or the
// gRPC error the task service would return.
func taskOf(ctx context.Context, c taskOwner, id string) (containerd.Task, error) {
	if c == nil || reflect.ValueOf(c).IsNil() {
		return nil, errgrpc.ToGRPC(fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound))
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return t, nil
}

// killVia is the task service's Kill through c's task (c nil: no such container).
func killVia(ctx context.Context, c taskOwner, r *tasks.KillRequest) (*emptypb.Empty, error) {
	t, err := taskOf(ctx, c, r.GetContainerID())
	if err != nil {
		return nil, err
	}
	var opts []containerd.KillOpts
	if r.GetAll() {
		opts = append(opts, containerd.WithKillAll)
	}
	if err := t.Kill(ctx, syscall.Signal(r.GetSignal()), opts...); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// waitVia is the task service's Wait through c's task.
func waitVia(ctx context.Context, c taskOwner, r *tasks.WaitRequest) (*tasks.WaitResponse, error) {
	t, err := taskOf(ctx, c, r.GetContainerID())
	if err != nil {
		return nil, err
	}
	ch, err := t.Wait(ctx)
	if err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	st := <-ch
	if err := st.Error(); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &tasks.WaitResponse{ExitStatus: st.ExitCode(), ExitedAt: timestamppb.New(st.ExitTime())}, nil
}

func (ts taskService) Delete(ctx context.Context, r *tasks.DeleteTaskRequest, _ ...grpc.CallOption) (*tasks.DeleteResponse, error) {
	if c := ts.live(r.GetContainerID()); c != nil {
		c.Mu.Lock()
		c.TaskDeletes++
		hook := c.OnTaskDelete
		c.Mu.Unlock()
		if hook != nil {
			hook()
		}
	}
	t, err := ts.activeTask(r.GetContainerID())
	if err != nil {
		return nil, err
	}
	if _, err := t.Delete(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &tasks.DeleteResponse{ID: r.GetContainerID()}, nil
}

func (f *Ctrd) GetImage(ctx context.Context, ref string) (containerd.Image, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if f.GetImageErr != nil {
		return nil, f.GetImageErr
	}
	if img, ok := f.images[ref]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (f *Ctrd) SnapshotService(string) snapshots.Snapshotter { return Snapshotter{owner: f} }

// ContainerService is the container record store (Delete only).
func (f *Ctrd) ContainerService() containers.Store { return containerStore{owner: f} }

type containerStore struct {
	containers.Store
	owner *Ctrd
}

// Update replaces the extensions the field paths name
// ("extensions.<name>"), as Container.Update does (UpdateErrAt counts it).
func (s containerStore) Update(ctx context.Context, rec containers.Container, fieldpaths ...string) (containers.Container, error) {
	s.owner.Mu.Lock()
	c := s.owner.Live[rec.ID]
	s.owner.Mu.Unlock()
	if c == nil {
		return containers.Container{}, fmt.Errorf("container %q: %w", rec.ID, errdefs.ErrNotFound)
	}
	if err := c.Update(ctx, withExtensions(rec, fieldpaths)); err != nil {
		return containers.Container{}, err
	}
	return c.Info(ctx)
}

// withExtensions copies the extensions of rec that fieldpaths name.
func withExtensions(rec containers.Container, fieldpaths []string) containerd.UpdateContainerOpts {
	return func(_ context.Context, _ *containerd.Client, c *containers.Container) error {
		for _, p := range fieldpaths {
			name, ok := strings.CutPrefix(p, "extensions.")
			if !ok {
				return fmt.Errorf("fake: field path %q: %w", p, errdefs.ErrNotImplemented)
			}
			if c.Extensions == nil {
				c.Extensions = map[string]typeurl.Any{}
			}
			c.Extensions[name] = rec.Extensions[name]
		}
		return nil
	}
}

// Delete deletes the record of a container as containerd does, without a
// look at its task; a record deleted under a live task fails with
// FailedPrecondition here so that tests catch the caller's mistake.
func (s containerStore) Delete(ctx context.Context, id string) error {
	s.owner.Mu.Lock()
	c := s.owner.Live[id]
	s.owner.Mu.Unlock()
	if c == nil {
		return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c.delete(ctx, false, true)
}

func (f *Ctrd) LeasesService() leases.Manager { return &Leases{owner: f} }

func (f *Ctrd) Lookup(id string) *Container {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for _, c := range f.Created {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (f *Ctrd) LiveIDs() []string {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []string
	for id := range f.Live {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Snapshotter is an empty snapshotter whose Remove marks the snapshot
// cleanup of the container whose snapshot key it names.
type Snapshotter struct {
	snapshots.Snapshotter
	owner *Ctrd
}

func (s Snapshotter) Remove(_ context.Context, key string) error {
	s.owner.Mu.Lock()
	created := append([]*Container(nil), s.owner.Created...)
	s.owner.Mu.Unlock() // never held with a container's Mu: delete takes them the other way round
	for _, c := range created {
		c.Mu.Lock()
		found := c.Record.SnapshotKey == key && !c.SnapshotCleanup
		if found {
			c.SnapshotCleanup = true
		}
		c.Mu.Unlock()
		if found {
			return nil
		}
	}
	return fmt.Errorf("snapshot %q: %w", key, errdefs.ErrNotFound)
}

func (Snapshotter) Walk(context.Context, snapshots.WalkFunc, ...string) error { return nil }

// Leases records the deletes of leases other than a create's own.
type Leases struct {
	leases.Manager
	owner *Ctrd
}

func (l *Leases) Create(_ context.Context, opts ...leases.Opt) (leases.Lease, error) {
	var lease leases.Lease
	for _, o := range opts {
		if err := o(&lease); err != nil {
			return leases.Lease{}, err
		}
	}
	return lease, nil
}

func (l *Leases) Delete(_ context.Context, lease leases.Lease, _ ...leases.DeleteOpt) error {
	l.owner.Mu.Lock()
	defer l.owner.Mu.Unlock()
	if lease.Labels[image.TemporaryLeaseLabel] != "" {
		return nil // a create's own lease
	}
	l.owner.LeaseDeletes = append(l.owner.LeaseDeletes, lease.ID)
	return fmt.Errorf("lease %q: %w", lease.ID, errdefs.ErrNotFound)
}

// Container is a containerd container of Ctrd.
type Container struct {
	containerd.Container
	owner *Ctrd
	id    string
	NOpts int

	Mu sync.Mutex
	// record holds what Update wrote (extensions).
	Record containers.Container
	// UpdateErrAt fails the n-th Update call (1-based; 0 never).
	UpdateErrAt int
	Updates     int
	NewTaskErr  error
	DeleteErr   error
	// TaskStartErr fails Start of the tasks made by NewTask.
	TaskStartErr error
	// OnKill runs when a task of this container is killed (the exit event).
	OnKill  func()
	OCISpec *oci.Spec

	// OnDelete, when set, runs at the start of Delete (outside Mu).
	OnDelete func(ctx context.Context)
	// TaskDeletes counts the task service's Delete calls for this
	// container, refused ones included; OnTaskDelete, when set, runs at
	// the start of each (outside Mu).
	TaskDeletes  int
	OnTaskDelete func()

	ActiveTask      *Task
	Tasks           []*Task
	Deleted         bool
	SnapshotCleanup bool
	// RawDelete is set when the record went through ContainerService().Delete
	// (backend.DeleteContainer), not the client's Delete.
	RawDelete bool
}

func (c *Container) ID() string { return c.id }

func (c *Container) Update(ctx context.Context, opts ...containerd.UpdateContainerOpts) error {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	c.Updates++
	if c.Updates == c.UpdateErrAt {
		return fmt.Errorf("update %d: %w", c.Updates, ErrInjected)
	}
	rec := c.Record
	rec.Extensions = make(map[string]typeurl.Any, len(c.Record.Extensions))
	for k, v := range c.Record.Extensions {
		rec.Extensions[k] = v
	}
	for _, o := range opts {
		if err := o(ctx, nil, &rec); err != nil {
			return err
		}
	}
	c.Record = rec
	return nil
}

func (c *Container) Delete(ctx context.Context, opts ...containerd.DeleteOpts) error {
	cleanup := false
	for _, o := range opts {
		if SameFunc(o, containerd.WithSnapshotCleanup) {
			cleanup = true
		}
	}
	return c.delete(ctx, cleanup, false)
}

// delete is Delete (the client's, cleaning the snapshot up when asked) or,
// raw, the container service's.
func (c *Container) delete(ctx context.Context, cleanup, raw bool) error {
	c.Mu.Lock()
	hook := c.OnDelete
	c.Mu.Unlock()
	if hook != nil {
		hook(ctx)
	}
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.DeleteErr != nil {
		return c.DeleteErr
	}
	if c.Deleted {
		return fmt.Errorf("container %q: %w", c.id, errdefs.ErrNotFound)
	}
	if c.ActiveTask != nil {
		if raw {
			return fmt.Errorf("fake: record of container %q deleted under its live task: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("container %q has a task: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if cleanup {
		c.SnapshotCleanup = true
	}
	c.RawDelete = raw
	c.Deleted = true
	c.owner.Mu.Lock()
	delete(c.owner.Live, c.id)
	c.owner.Mu.Unlock()
	return nil
}

func (c *Container) NewTask(ctx context.Context, _ cio.Creator, _ ...containerd.NewTaskOpts) (containerd.Task, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.NewTaskErr != nil {
		return nil, c.NewTaskErr
	}
	if c.ActiveTask != nil {
		return nil, fmt.Errorf("task of %q: %w", c.id, errdefs.ErrAlreadyExists)
	}
	t := &Task{ctr: c, pid: uint32(1000 + len(c.Tasks)), StartErr: c.TaskStartErr}
	c.ActiveTask = t
	c.Tasks = append(c.Tasks, t)
	return t, nil
}

func (c *Container) Task(context.Context, cio.Attach) (containerd.Task, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.ActiveTask == nil {
		return nil, fmt.Errorf("no task of %q: %w", c.id, errdefs.ErrNotFound)
	}
	return c.ActiveTask, nil
}

// Info returns the record (what Update wrote).
func (c *Container) Info(context.Context, ...containerd.InfoOpts) (containers.Container, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Record, nil
}

func (c *Container) Spec(context.Context) (*oci.Spec, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.OCISpec == nil {
		return nil, fmt.Errorf("spec of %q: %w", c.id, errdefs.ErrNotFound)
	}
	return c.OCISpec, nil
}

// extension decodes the extension name last written by Update into v.
func (c *Container) Extension(t testing.TB, name string, v any) bool {
	t.Helper()
	c.Mu.Lock()
	a, ok := c.Record.Extensions[name]
	c.Mu.Unlock()
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

func (c *Container) State() (deleted, SnapshotCleanup bool, tasks []*Task) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Deleted, c.SnapshotCleanup, append([]*Task(nil), c.Tasks...)
}

// Task is the task of a Container.
type Task struct {
	containerd.Task
	ctr      *Container
	pid      uint32
	StartErr error

	Mu          sync.Mutex
	Started     bool
	Deleted     bool
	ProcessKill bool
	Kills       []syscall.Signal
	// KillAll records, per Kill, whether it was sent to every process
	// (containerd.WithKillAll).
	KillAll []bool
	// exited is closed when the process dies (SIGKILL): Wait returns then.
	exited chan struct{}
}

// exitedLocked is the channel closed at the process's death (t.Mu held).
func (t *Task) exitedLocked() chan struct{} {
	if t.exited == nil {
		t.exited = make(chan struct{})
	}
	return t.exited
}

// Wait is containerd's: the channel gets the exit status once the process
// is SIGKILLed, or an error status when ctx ends first. It does not depend
// on the container's OnKill (the exit event).
func (t *Task) Wait(ctx context.Context) (<-chan containerd.ExitStatus, error) {
	t.Mu.Lock()
	exited := t.exitedLocked()
	t.Mu.Unlock()
	ch := make(chan containerd.ExitStatus, 1)
	go func() {
		select {
		case <-exited:
			ch <- *containerd.NewExitStatus(137, time.Unix(1700000001, 0), nil)
		case <-ctx.Done():
			ch <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, ctx.Err())
		}
	}()
	return ch, nil
}

func (t *Task) Pid() uint32 { return t.pid }

func (t *Task) Start(context.Context) error {
	t.Mu.Lock()
	defer t.Mu.Unlock()
	if t.StartErr != nil {
		return t.StartErr
	}
	t.Started = true
	return nil
}

func (t *Task) Kill(_ context.Context, sig syscall.Signal, opts ...containerd.KillOpts) error {
	all := false
	for _, o := range opts {
		if SameFunc(o, containerd.WithKillAll) {
			all = true
		}
	}
	t.Mu.Lock()
	t.Kills = append(t.Kills, sig)
	t.KillAll = append(t.KillAll, all)
	if exited := t.exitedLocked(); sig == syscall.SIGKILL {
		select {
		case <-exited:
		default:
			close(exited)
		}
	}
	t.Mu.Unlock()
	t.ctr.Mu.Lock()
	OnKill := t.ctr.OnKill
	t.ctr.Mu.Unlock()
	if OnKill != nil {
		// The exit event arrives asynchronously, as containerd's would.
		go OnKill()
	}
	return nil
}

func (t *Task) Delete(_ context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	t.Mu.Lock()
	defer t.Mu.Unlock()
	if t.Deleted {
		return nil, fmt.Errorf("task %d: %w", t.pid, errdefs.ErrNotFound)
	}
	for _, o := range opts {
		if SameFunc(o, containerd.WithProcessKill) {
			t.ProcessKill = true
		}
	}
	t.Deleted = true
	t.ctr.Mu.Lock()
	if t.ctr.ActiveTask == t {
		t.ctr.ActiveTask = nil
	}
	createdAt := t.ctr.Record.CreatedAt
	t.ctr.Mu.Unlock()
	return containerd.NewExitStatus(0, createdAt, nil), nil
}

func (t *Task) Killed() []syscall.Signal {
	t.Mu.Lock()
	defer t.Mu.Unlock()
	return append([]syscall.Signal(nil), t.Kills...)
}

func (t *Task) State() (started, deleted, ProcessKill bool) {
	t.Mu.Lock()
	defer t.Mu.Unlock()
	return t.Started, t.Deleted, t.ProcessKill
}

// ---- images ----

// Images is the image store (make it with NewImages).
type Images struct {
	Mu        sync.Mutex
	images    map[string]image.Image
	EnsureErr error
	Ensured   []string
}

func (f *Images) Add(img image.Image, refs ...string) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for _, r := range append(refs, img.ID) {
		f.images[r] = img
	}
}

func (f *Images) Get(ref string) (image.Image, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	if img, ok := f.images[ref]; ok {
		return img, nil
	}
	return image.Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func (f *Images) EnsureImage(ctx context.Context, ref string, _ *image.Credentials, _ ...image.PullOpt) (image.Image, error) {
	f.Mu.Lock()
	f.Ensured = append(f.Ensured, ref)
	err := f.EnsureErr
	f.Mu.Unlock()
	if err != nil {
		return image.Image{}, err
	}
	return f.Get(ref)
}

// ---- CNI ----

// NetCall is a CNI ADD or DEL: the sandbox, the netns path and the number of options.
type NetCall struct {
	ID, Path string
	NOpts    int
}

// Network is CNI.
type Network struct {
	Mu       sync.Mutex
	SetupErr error
	// RemoveErrs fails that many Remove calls.
	RemoveErrs int
	// OnRemove, when set, runs at the start of each Remove (e.g. to make a
	// CNI DEL hang); its error fails the call.
	OnRemove func(ctx context.Context) error
	// result overrides the Setup result (default: eth0 with 10.88.0.5).
	Result  *gocni.Result
	Setups  []NetCall
	Removes []NetCall
}

func (f *Network) Setup(ctx context.Context, id, path string, args cni.PodArgs) (*gocni.Result, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Setups = append(f.Setups, NetCall{id, path, len(args.Opts())})
	if f.SetupErr != nil {
		return nil, f.SetupErr
	}
	if f.Result != nil {
		return f.Result, nil
	}
	return &gocni.Result{Interfaces: map[string]*gocni.Config{
		"eth0": {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("10.88.0.5")}}},
	}}, nil
}

func (f *Network) Remove(ctx context.Context, id, path string, args cni.PodArgs) error {
	f.Mu.Lock()
	hook := f.OnRemove
	f.Mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Removes = append(f.Removes, NetCall{id, path, len(args.Opts())})
	if f.RemoveErrs > 0 {
		f.RemoveErrs--
		return fmt.Errorf("cni del: %w", ErrInjected)
	}
	return nil
}

func (f *Network) Status() error               { return nil }
func (f *Network) Config() *gocni.ConfigResult { return nil }

func (f *Network) Calls() (setups, removes []NetCall) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	return append([]NetCall(nil), f.Setups...), append([]NetCall(nil), f.Removes...)
}

// ---- network namespaces and shm ----

// Host stands in for network namespace and tmpfs mounts: a namespace is
// a plain file in the sandbox's netns directory, an shm "mount" a directory
// remembered as mounted.
type Host struct {
	Mu          sync.Mutex
	NewNetNSErr error
	MountShmErr error
	Namespaces  map[string]*NetNS
	Created     []*NetNS
	Shm         map[string]bool
	ShmMounts   int
	// UsernsMaps are the pinned user namespaces (uid, gid mapping) by path;
	// UsernsPinned counts the pins ever made.
	UsernsMaps   map[string][2]runtimespec.LinuxIDMapping
	UsernsPinned int
}

// NewHost is a host without namespaces or mounts.
func NewHost() *Host {
	return &Host{Namespaces: map[string]*NetNS{}, Shm: map[string]bool{}}
}

// NetNS is a network namespace of Host.
type NetNS struct {
	path    string
	Removed bool
	host    *Host
}

func (n *NetNS) GetPath() string { return n.path }

func (n *NetNS) Closed() (bool, error) {
	_, err := os.Stat(n.path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return false, err
}

func (n *NetNS) Remove() error {
	n.host.Mu.Lock()
	n.Removed = true
	n.host.Mu.Unlock()
	if err := os.Remove(n.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// NewNetNS creates the directory, as netns.NewNetNS does, before failing.
func (h *Host) NewNetNS(dir string) (backend.NetNS, error) {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if h.NewNetNSErr != nil {
		return nil, h.NewNetNSErr
	}
	p := filepath.Join(dir, fmt.Sprintf("cni-%d", len(h.Created)))
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		return nil, err
	}
	ns := &NetNS{path: p, host: h}
	h.Namespaces[p] = ns
	h.Created = append(h.Created, ns)
	return ns, nil
}

// NewNetNSInUserns is NewNetNS plus a pin file (dir/userns) recording
// the mappings; UsernsMaps has them by pin path until UnpinUserns.
func (h *Host) NewNetNSInUserns(dir string, uid, gid runtimespec.LinuxIDMapping) (backend.NetNS, string, error) {
	ns, err := h.NewNetNS(dir)
	if err != nil {
		return nil, "", err
	}
	pin := filepath.Join(dir, "userns")
	if err := os.WriteFile(pin, nil, 0o444); err != nil {
		return nil, "", err
	}
	h.Mu.Lock()
	defer h.Mu.Unlock()
	if h.UsernsMaps == nil {
		h.UsernsMaps = map[string][2]runtimespec.LinuxIDMapping{}
	}
	h.UsernsMaps[pin] = [2]runtimespec.LinuxIDMapping{uid, gid}
	h.UsernsPinned++
	return ns, pin, nil
}

// UnpinUserns forgets and removes a pin (idempotent).
func (h *Host) UnpinUserns(path string) error {
	h.Mu.Lock()
	delete(h.UsernsMaps, path)
	h.Mu.Unlock()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (h *Host) LoadNetNS(path string) backend.NetNS {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	if ns, ok := h.Namespaces[path]; ok {
		return ns
	}
	return &NetNS{path: path, host: h}
}

// MountShm creates the directory, as backend.OS.MountShm does, before failing.
func (h *Host) MountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return err
	}
	h.Mu.Lock()
	defer h.Mu.Unlock()
	if h.MountShmErr != nil {
		return h.MountShmErr
	}
	h.Shm[path] = true
	h.ShmMounts++
	return nil
}

// UnmountShm is idempotent and removes the directory, as backend.OS.UnmountShm.
func (h *Host) UnmountShm(path string) error {
	h.Mu.Lock()
	delete(h.Shm, path)
	h.Mu.Unlock()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (h *Host) MountedShm() []string {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	var out []string
	for p := range h.Shm {
		out = append(out, p)
	}
	return out
}

func (h *Host) CreatedNetNS() []*NetNS {
	h.Mu.Lock()
	defer h.Mu.Unlock()
	return append([]*NetNS(nil), h.Created...)
}

// ---- the service ----

const (
	testPauseImage = "registry.k8s.io/pause:3.10"
	testPauseID    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	testBusybox    = "docker.io/library/busybox:latest"
	testBusyboxID  = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

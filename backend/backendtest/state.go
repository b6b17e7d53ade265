package backendtest

import (
	"context"
	"fmt"
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
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Fakes of containerd as recovery and the event monitor see it
// (backend.Containerd): listed containers with their records, their tasks, and
// the task event stream. Unlike containerd, a task call can be made to hang
// (a hung shim).

// State is the listing and event half of backend.Containerd.
type State struct {
	Mu   sync.Mutex
	Ctrs []*StateContainer
	subs map[chan *events.Envelope]struct{}
	// subscribes counts Subscribe calls.
	Subscribes int
	// release unblocks hung task calls (closed at test end).
	release chan struct{}
	// inflight are the contexts of the task calls in progress
	// (Container.Task); MaxInflight is the most of them with a live context.
	Inflight    []context.Context
	MaxInflight int
}

// NewState is containerd with no containers; hung calls end with the test.
func NewState(t testing.TB) *State {
	f := &State{subs: map[chan *events.Envelope]struct{}{}, release: make(chan struct{})}
	t.Cleanup(func() { close(f.release) })
	return f
}

func (f *State) Containers(ctx context.Context, filters ...string) ([]containerd.Container, error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []containerd.Container
	for _, c := range f.Ctrs {
		c.Mu.Lock()
		labels, deleted := c.Rec.Labels, c.Deleted
		c.Mu.Unlock()
		if deleted {
			continue
		}
		ok := len(filters) == 0
		for _, flt := range filters {
			if matchLabel(flt, labels) {
				ok = true
			}
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// matchLabel evaluates a containerd filter of the form labels."key"=="value"
// (the only form the daemon uses) against labels.
func matchLabel(filter string, labels map[string]string) bool {
	for k, v := range labels {
		if filter == fmt.Sprintf("labels.%q==%q", k, v) {
			return true
		}
	}
	return false
}

func (f *State) Subscribe(ctx context.Context, _ ...string) (<-chan *events.Envelope, <-chan error) {
	ch := make(chan *events.Envelope, 64)
	errCh := make(chan error, 1)
	f.Mu.Lock()
	f.subs[ch] = struct{}{}
	f.Subscribes++
	f.Mu.Unlock()
	go func() {
		<-ctx.Done()
		f.Mu.Lock()
		delete(f.subs, ch)
		f.Mu.Unlock()
	}()
	return ch, errCh
}

// PublishExit delivers a task exit to the subscribers of the moment, as
// containerd does (events are not replayed to later subscribers).
func (f *State) PublishExit(id string, pid, code uint32) {
	a, err := typeurl.MarshalAny(&eventtypes.TaskExit{ContainerID: id, ID: id, Pid: pid, ExitStatus: code, ExitedAt: timestamppb.Now()})
	if err != nil {
		panic(err)
	}
	e := &events.Envelope{Timestamp: time.Now(), Namespace: "k8s.io", Topic: "/tasks/exit", Event: a}
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// enter counts a task call in progress; calls whose context already ended
// (abandoned by a caller that timed out) do not count.
func (f *State) enter(ctx context.Context) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Inflight = append(f.Inflight, ctx)
	n := 0
	for _, c := range f.Inflight {
		if c.Err() == nil {
			n++
		}
	}
	f.MaxInflight = max(f.MaxInflight, n)
}

func (f *State) leave(ctx context.Context) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for i, c := range f.Inflight {
		if c == ctx {
			f.Inflight = append(f.Inflight[:i], f.Inflight[i+1:]...)
			return
		}
	}
}

func (f *State) Lookup(id string) *StateContainer {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	for _, c := range f.Ctrs {
		if c.id == id {
			return c
		}
	}
	return nil
}

// StateContainer is a containerd container of State.
type StateContainer struct {
	containerd.Container
	owner *State
	id    string

	Mu         sync.Mutex
	Rec        containers.Container
	ActiveTask *StateTask
	Deleted    bool
	// hang makes Task block until ctx ends or the test ends.
	Hang bool
}

func (c *StateContainer) ID() string { return c.id }

func (c *StateContainer) Info(context.Context, ...containerd.InfoOpts) (containers.Container, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Rec, nil
}

func (c *StateContainer) Extensions(context.Context) (map[string]typeurl.Any, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Rec.Extensions, nil
}

func (c *StateContainer) Labels(context.Context) (map[string]string, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Rec.Labels, nil
}

func (c *StateContainer) Spec(context.Context) (*oci.Spec, error) {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	v, err := typeurl.UnmarshalAny(c.Rec.Spec)
	if err != nil {
		return nil, err
	}
	return v.(*oci.Spec), nil
}

func (c *StateContainer) Update(ctx context.Context, opts ...containerd.UpdateContainerOpts) error {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	rec := c.Rec
	rec.Extensions = map[string]typeurl.Any{}
	for k, v := range c.Rec.Extensions {
		rec.Extensions[k] = v
	}
	for _, o := range opts {
		if err := o(ctx, nil, &rec); err != nil {
			return err
		}
	}
	c.Rec = rec
	return nil
}

func (c *StateContainer) Delete(context.Context, ...containerd.DeleteOpts) error {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	if c.Deleted {
		return fmt.Errorf("container %q: %w", c.id, errdefs.ErrNotFound)
	}
	if c.ActiveTask != nil {
		return fmt.Errorf("container %q has a task: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	c.Deleted = true
	return nil
}

func (c *StateContainer) Task(ctx context.Context, _ cio.Attach) (containerd.Task, error) {
	c.owner.enter(ctx)
	defer c.owner.leave(ctx)
	c.Mu.Lock()
	hang, t := c.Hang, c.ActiveTask
	c.Mu.Unlock()
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

func (c *StateContainer) IsDeleted() bool {
	c.Mu.Lock()
	defer c.Mu.Unlock()
	return c.Deleted
}

// StateTask is the task of an StateContainer.
type StateTask struct {
	containerd.Task
	ctr *StateContainer
	pid uint32

	Mu         sync.Mutex
	ProcStatus containerd.ProcessStatus
	ExitCode   uint32
	ExitedAt   time.Time
	Deleted    bool
	Kills      []syscall.Signal
	// ExitAfterStatus: the process exits (with this code) just after the
	// first Status call answered "running".
	ExitAfterStatus *uint32
	// OnDelete, when set, runs at the start of Delete.
	OnDelete func()
}

func (t *StateTask) Pid() uint32 { return t.pid }

func (t *StateTask) Status(context.Context) (containerd.Status, error) {
	t.Mu.Lock()
	st := containerd.Status{Status: t.ProcStatus, ExitStatus: t.ExitCode, ExitTime: t.ExitedAt}
	exit := t.ExitAfterStatus
	t.ExitAfterStatus = nil
	t.Mu.Unlock()
	if exit != nil {
		t.Exit(*exit)
	}
	return st, nil
}

// exit stops the process and publishes its exit.
func (t *StateTask) Exit(code uint32) {
	t.Mu.Lock()
	t.ProcStatus, t.ExitCode, t.ExitedAt = containerd.Stopped, code, time.Now()
	t.Mu.Unlock()
	t.ctr.owner.PublishExit(t.ctr.id, t.pid, code)
}

func (t *StateTask) Kill(_ context.Context, sig syscall.Signal, _ ...containerd.KillOpts) error {
	t.Mu.Lock()
	t.Kills = append(t.Kills, sig)
	t.Mu.Unlock()
	go t.Exit(128 + uint32(sig))
	return nil
}

// Wait is containerd's: the channel gets the exit status once the process
// has stopped (polled), or an error status when ctx ends first.
func (t *StateTask) Wait(ctx context.Context) (<-chan containerd.ExitStatus, error) {
	ch := make(chan containerd.ExitStatus, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			t.Mu.Lock()
			stopped, code, at := t.ProcStatus == containerd.Stopped, t.ExitCode, t.ExitedAt
			t.Mu.Unlock()
			if stopped {
				ch <- *containerd.NewExitStatus(code, at, nil)
				return
			}
			select {
			case <-ctx.Done():
				ch <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, ctx.Err())
				return
			case <-tick.C:
			}
		}
	}()
	return ch, nil
}

func (t *StateTask) Delete(context.Context, ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error) {
	t.Mu.Lock()
	hook := t.OnDelete
	t.Mu.Unlock()
	if hook != nil {
		hook()
	}
	t.Mu.Lock()
	defer t.Mu.Unlock()
	if t.Deleted {
		return nil, fmt.Errorf("task %d: %w", t.pid, errdefs.ErrNotFound)
	}
	t.Deleted = true
	t.ctr.Mu.Lock()
	if t.ctr.ActiveTask == t {
		t.ctr.ActiveTask = nil
	}
	t.ctr.Mu.Unlock()
	return containerd.NewExitStatus(t.ExitCode, t.ExitedAt, nil), nil
}

func (t *StateTask) State() (deleted bool, kills []syscall.Signal) {
	t.Mu.Lock()
	defer t.Mu.Unlock()
	return t.Deleted, append([]syscall.Signal(nil), t.Kills...)
}

// AddContainer adds a containerd container whose record has labels, the
// metadata extension ext made of md (corrupted when corrupt) and spec.
func (f *State) AddContainer(t testing.TB, id string, labels map[string]string, ext string, md any, corrupt bool, spec *oci.Spec) *StateContainer {
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
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	c := &StateContainer{owner: f, id: id, Rec: containers.Container{
		ID:         id,
		Labels:     l,
		Extensions: map[string]typeurl.Any{ext: a},
		Spec:       sa,
		Runtime:    containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		CreatedAt:  time.Now(),
	}}
	f.Mu.Lock()
	f.Ctrs = append(f.Ctrs, c)
	f.Mu.Unlock()
	return c
}

// StartTask gives c a task in the given state.
func (c *StateContainer) StartTask(pid uint32, status containerd.ProcessStatus, code uint32) *StateTask {
	t := &StateTask{ctr: c, pid: pid, ProcStatus: status, ExitCode: code}
	if status == containerd.Stopped {
		t.ExitedAt = time.Now()
	}
	c.Mu.Lock()
	c.ActiveTask = t
	c.Mu.Unlock()
	return t
}

package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
)

// TestRegressionContainerIORace: StartContainer set the container's IO
// after the container was in the store, while RemoveContainer, attach, log
// reopening and the exit handler read it without synchronisation. Run with
// -race: the old code is reported. Removal during a start is also refused
// now (it used to delete the task under the starting RPC).
func TestRegressionContainerIORace(t *testing.T) {
	e := newTestEnv(t)
	pod := e.runPod(t, podConfig("web"))
	ctx := context.Background()
	for i := range 8 {
		id := e.createContainer(t, pod, ctrConfig(fmt.Sprintf("app%d", i)))
		var wg sync.WaitGroup
		var startErr, removeErr error
		wg.Go(func() { startErr = e.startContainerErr(id) })
		wg.Go(func() {
			_, removeErr = e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		})
		wg.Go(func() {
			_, _ = e.s.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
		})
		wg.Wait()
		if removeErr != nil && !errdefs.IsFailedPrecondition(removeErr) {
			t.Errorf("RemoveContainer during StartContainer: %v", removeErr)
		}
		if startErr != nil && !errdefs.IsNotFound(startErr) && !errdefs.IsFailedPrecondition(startErr) {
			t.Errorf("StartContainer during RemoveContainer: %v", startErr)
		}
		// Whatever the order, the container can be removed afterwards and
		// nothing of it is left.
		if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer: %v", err)
		}
		if _, err := e.s.containers.Get(id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s still in the store: %v", id, err)
		}
		if _, err := e.ctrd.Lookup(id).Task(ctx, nil); !errdefs.IsNotFound(err) {
			t.Errorf("container %s left a task: %v", id, err)
		}
	}
}

// ---- UpdateContainerResources ----

// resContainer is a containerd container whose stored spec Update writes
// and Spec reads (decoded afresh, as containerd's client does), with a task
// whose cgroup updates are recorded. It also counts the read-modify-write
// sections (from Spec to the end of the task update) that overlap.
type resContainer struct {
	containerd.Container
	id string

	mu          sync.Mutex
	spec        typeurl.Any
	task        *resTask
	inflight    int
	MaxInflight int
}

func (c *resContainer) ID() string { return c.id }

func (c *resContainer) Spec(context.Context) (*oci.Spec, error) {
	c.mu.Lock()
	c.inflight++
	c.MaxInflight = max(c.MaxInflight, c.inflight)
	a := c.spec
	c.mu.Unlock()
	var s oci.Spec
	if err := typeurl.UnmarshalTo(a, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *resContainer) Update(ctx context.Context, opts ...containerd.UpdateContainerOpts) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := containers.Container{ID: c.id, Spec: c.spec}
	for _, o := range opts {
		if err := o(ctx, nil, &rec); err != nil {
			return err
		}
	}
	c.spec = rec.Spec
	return nil
}

func (c *resContainer) Task(context.Context, cio.Attach) (containerd.Task, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.task == nil {
		return nil, fmt.Errorf("task of %s: %w", c.id, errdefs.ErrNotFound)
	}
	return c.task, nil
}

// storedMemory is the memory limit in the stored spec.
func (c *resContainer) storedMemory(t *testing.T) int64 {
	t.Helper()
	c.mu.Lock()
	a := c.spec
	c.mu.Unlock()
	var s oci.Spec
	if err := typeurl.UnmarshalTo(a, &s); err != nil {
		t.Fatal(err)
	}
	return *s.Linux.Resources.Memory.Limit
}

type resTask struct {
	containerd.Task
	ctr *resContainer

	mu        sync.Mutex
	updateErr error
	// memory is the limit the cgroup has; updates the applied limits.
	memory  int64
	updates []int64
}

func (t *resTask) Update(ctx context.Context, opts ...containerd.UpdateTaskOpts) error {
	var info containerd.UpdateTaskInfo
	for _, o := range opts {
		if err := o(ctx, nil, &info); err != nil {
			return err
		}
	}
	// A cgroup write takes a moment: long enough for unserialised updates
	// to overlap.
	time.Sleep(time.Millisecond)
	t.ctr.mu.Lock()
	t.ctr.inflight--
	t.ctr.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.updateErr != nil {
		return t.updateErr
	}
	res := info.Resources.(*runtimespec.LinuxResources)
	t.memory = *res.Memory.Limit
	t.updates = append(t.updates, t.memory)
	return nil
}

const resInitialMemory = 100 << 20

// addResContainer puts a running container backed by a resContainer in the
// store, with a memory limit of resInitialMemory everywhere.
func addResContainer(t *testing.T, e *testEnv, id string) (*container.Container, *resContainer) {
	t.Helper()
	limit := int64(resInitialMemory)
	a, err := typeurl.MarshalAny(&oci.Spec{
		Process: &runtimespec.Process{},
		Linux:   &runtimespec.Linux{Resources: &runtimespec.LinuxResources{Memory: &runtimespec.LinuxMemory{Limit: &limit}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	fc := &resContainer{id: id, spec: a}
	fc.task = &resTask{ctr: fc, memory: limit}
	c := container.New(container.Metadata{ID: id, SandboxID: "pod"}, t.TempDir(), container.Status{
		CreatedAt: 1, StartedAt: 2, Pid: 42,
		Resources: cloneResources(&runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit}),
	})
	c.Container = fc
	if err := e.s.containers.Add(c); err != nil {
		t.Fatal(err)
	}
	return c, fc
}

func updateMemory(e *testEnv, id string, limit int64) error {
	_, err := e.s.UpdateContainerResources(context.Background(), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id,
		Linux:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: limit},
	})
	return err
}

// TestRegressionUpdateResourcesFailedCgroupUpdate: when the task (cgroup)
// update fails, the stored spec used to keep the new resources, so the
// container came back with them after a restart while its cgroup and status
// had the old ones. Now the spec is rolled back.
func TestRegressionUpdateResourcesFailedCgroupUpdate(t *testing.T) {
	e := newTestEnv(t)
	c, fc := addResContainer(t, e, "c1")
	fc.task.updateErr = fmt.Errorf("cgroup write: %w", backendtest.ErrInjected)

	if err := updateMemory(e, "c1", 200<<20); !errors.Is(err, backendtest.ErrInjected) {
		t.Fatalf("err = %v, want the injected failure", err)
	}
	if got := fc.storedMemory(t); got != resInitialMemory {
		t.Errorf("stored spec memory limit = %d after a failed update, want %d", got, resInitialMemory)
	}
	if got := c.Status().Resources.GetLinux().GetMemoryLimitInBytes(); got != resInitialMemory {
		t.Errorf("status memory limit = %d after a failed update, want %d", got, resInitialMemory)
	}

	// Once the cgroup accepts it, the same update goes through everywhere.
	fc.task.mu.Lock()
	fc.task.updateErr = nil
	fc.task.mu.Unlock()
	if err := updateMemory(e, "c1", 200<<20); err != nil {
		t.Fatal(err)
	}
	if got := fc.storedMemory(t); got != 200<<20 {
		t.Errorf("stored spec memory limit = %d", got)
	}
	if got := c.Status().Resources.GetLinux().GetMemoryLimitInBytes(); got != 200<<20 {
		t.Errorf("status memory limit = %d", got)
	}
}

// TestRegressionUpdateResourcesConcurrent: concurrent updates of one
// container used to interleave (read the spec, change it, store it, update
// the cgroup), so the stored spec could end with one update's resources
// and the cgroup with another's. Now they are serialised: the stored spec,
// the cgroup and the status all hold the update applied last.
func TestRegressionUpdateResourcesConcurrent(t *testing.T) {
	e := newTestEnv(t)
	c, fc := addResContainer(t, e, "c1")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if err := updateMemory(e, "c1", int64(i+1)<<30); err != nil {
				t.Errorf("update %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	fc.mu.Lock()
	overlap := fc.MaxInflight
	fc.mu.Unlock()
	if overlap != 1 {
		t.Errorf("%d updates of one container ran at once, want 1", overlap)
	}
	fc.task.mu.Lock()
	cgroup, n := fc.task.memory, len(fc.task.updates)
	fc.task.mu.Unlock()
	if n != 8 {
		t.Errorf("%d cgroup updates, want 8", n)
	}
	if got := fc.storedMemory(t); got != cgroup {
		t.Errorf("stored spec memory limit %d, cgroup %d: they must agree", got, cgroup)
	}
	if got := c.Status().Resources.GetLinux().GetMemoryLimitInBytes(); got != cgroup {
		t.Errorf("status memory limit %d, cgroup %d: they must agree", got, cgroup)
	}
}

// TestUpdateResourcesExitedMeanwhile: a container whose task is gone by the
// time of the update keeps the new spec and status (it has no cgroup).
func TestUpdateResourcesExitedMeanwhile(t *testing.T) {
	e := newTestEnv(t)
	c, fc := addResContainer(t, e, "c1")
	fc.mu.Lock()
	fc.task = nil
	fc.mu.Unlock()
	if err := updateMemory(e, "c1", 300<<20); err != nil {
		t.Fatal(err)
	}
	if got := fc.storedMemory(t); got != 300<<20 {
		t.Errorf("stored spec memory limit = %d", got)
	}
	if got := c.Status().Resources.GetLinux().GetMemoryLimitInBytes(); got != 300<<20 {
		t.Errorf("status memory limit = %d", got)
	}
	// An exited container is refused.
	if err := c.Update(func(st *container.Status) error { st.FinishedAt = 3; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := updateMemory(e, "c1", 400<<20); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update of an exited container: err = %v, want FailedPrecondition", err)
	}
}

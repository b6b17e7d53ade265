// Package backendtest holds fakes of the lifecycle dependencies of package
// backend, shared by the unit tests of the controllers and of the server:
//
//   - Ctrd, Container, Task: containerd as the create/start/stop paths see it
//     (new containers and tasks, images, leases, snapshots), recording what
//     was done so tests can assert that a failed call undid every step;
//   - State, StateContainer, StateTask: containerd as recovery and the event
//     monitor see it (listed containers with records, tasks that can hang,
//     the task event stream); CtrdWithState joins the two;
//   - Images, Network, Host: the image store, CNI, and netns/shm mounts.
//
// Failures are injected by setting the exported *Err fields.
package backendtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/image"
)

// NewImages is an empty image store.
func NewImages() *Images { return &Images{images: map[string]image.Image{}} }

// CtrdWithState is containerd whose containers and events are those of the
// State (shallower, so they win) and whose other calls go to the Ctrd.
type CtrdWithState struct {
	*Ctrd
	*State
}

// ContainerService deletes the records of State's containers and Ctrd's.
func (c CtrdWithState) ContainerService() containers.Store {
	return stateContainerStore{Store: c.Ctrd.ContainerService(), state: c.State}
}

type stateContainerStore struct {
	containers.Store
	state *State
}

func (s stateContainerStore) Update(ctx context.Context, rec containers.Container, fieldpaths ...string) (containers.Container, error) {
	if c := s.state.Lookup(rec.ID); c != nil && !c.IsDeleted() {
		if err := c.Update(ctx, withExtensions(rec, fieldpaths)); err != nil {
			return containers.Container{}, err
		}
		return c.Info(ctx)
	}
	return s.Store.Update(ctx, rec, fieldpaths...)
}

func (s stateContainerStore) Delete(ctx context.Context, id string) error {
	if c := s.state.Lookup(id); c != nil && !c.IsDeleted() {
		c.Mu.Lock()
		defer c.Mu.Unlock()
		if c.ActiveTask != nil {
			return fmt.Errorf("fake: record of container %q deleted under its live task: %w", id, errdefs.ErrFailedPrecondition)
		}
		c.Deleted = true
		return nil
	}
	return s.Store.Delete(ctx, id)
}

// TaskService deletes the tasks of State's containers (refusing a running
// one, as containerd does) and serves Ctrd's.
func (c CtrdWithState) TaskService() tasks.TasksClient {
	return stateTaskService{TasksClient: c.Ctrd.TaskService(), state: c.State}
}

type stateTaskService struct {
	tasks.TasksClient
	state *State
}

// Kill and Wait reach State's containers' tasks (their Hang included) and Ctrd's.
func (s stateTaskService) Kill(ctx context.Context, r *tasks.KillRequest, opts ...grpc.CallOption) (*emptypb.Empty, error) {
	if c := s.state.Lookup(r.GetContainerID()); c != nil {
		return killVia(ctx, c, r)
	}
	return s.TasksClient.Kill(ctx, r, opts...)
}

func (s stateTaskService) Wait(ctx context.Context, r *tasks.WaitRequest, opts ...grpc.CallOption) (*tasks.WaitResponse, error) {
	if c := s.state.Lookup(r.GetContainerID()); c != nil {
		return waitVia(ctx, c, r)
	}
	return s.TasksClient.Wait(ctx, r, opts...)
}

func (s stateTaskService) Delete(ctx context.Context, r *tasks.DeleteTaskRequest, opts ...grpc.CallOption) (*tasks.DeleteResponse, error) {
	c := s.state.Lookup(r.GetContainerID())
	if c == nil {
		return s.TasksClient.Delete(ctx, r, opts...)
	}
	c.Mu.Lock()
	t := c.ActiveTask
	c.Mu.Unlock()
	if t == nil {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s: %w", r.GetContainerID(), errdefs.ErrNotFound))
	}
	t.Mu.Lock()
	running := t.ProcStatus == containerd.Running
	t.Mu.Unlock()
	if running {
		return nil, errgrpc.ToGRPC(fmt.Errorf("task %s is running: %w", r.GetContainerID(), errdefs.ErrFailedPrecondition))
	}
	if _, err := t.Delete(ctx); err != nil {
		return nil, errgrpc.ToGRPC(err)
	}
	return &tasks.DeleteResponse{ID: r.GetContainerID()}, nil
}

var (
	_ backend.Containerd = CtrdWithState{}
	_ backend.Images     = (*Images)(nil)
	_ backend.Network    = (*Network)(nil)
	_ backend.Host       = (*Host)(nil)
)

// WaitFor polls cond for up to a generous bound.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package doctor

import (
	"context"
	"fmt"
	"syscall"
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// TemporaryRecordLabel marks the container record the doctor makes for the
// time it takes to delete a task whose own record is gone.
const TemporaryRecordLabel = "io.cri-containerd.doctor.temporary"

// ContainerdClient is the real Containerd over a containerd client.
type ContainerdClient struct {
	Client    *containerd.Client
	Namespace string
}

func (c ContainerdClient) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.Namespace)
}

// Containers implements Containerd.
func (c ContainerdClient) Containers(ctx context.Context) ([]Record, error) {
	list, err := c.Client.ContainerService().List(c.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := make([]Record, 0, len(list))
	for _, r := range list {
		out = append(out, Record{
			ID: r.ID, Labels: r.Labels, Extensions: r.Extensions,
			Snapshotter: r.Snapshotter, SnapshotKey: r.SnapshotKey, CreatedAt: r.CreatedAt,
		})
	}
	return out, nil
}

// AllContainerIDs implements Containerd.
func (c ContainerdClient) AllContainerIDs(ctx context.Context) (map[string]string, error) {
	nss, err := c.Client.NamespaceService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	out := map[string]string{}
	for _, ns := range nss {
		list, err := c.Client.ContainerService().List(namespaces.WithNamespace(ctx, ns))
		if err != nil {
			return nil, fmt.Errorf("listing containers of namespace %s: %w", ns, err)
		}
		for _, r := range list {
			out[r.ID] = ns
		}
	}
	return out, nil
}

// Tasks implements Containerd.
func (c ContainerdClient) Tasks(ctx context.Context) ([]Task, error) {
	resp, err := c.Client.TaskService().List(c.ctx(ctx), &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", errgrpc.ToNative(err))
	}
	out := make([]Task, 0, len(resp.GetTasks()))
	for _, t := range resp.GetTasks() {
		out = append(out, Task{ID: t.GetID(), Pid: t.GetPid(), Status: t.GetStatus().String()})
	}
	return out, nil
}

// Snapshots implements Containerd.
func (c ContainerdClient) Snapshots(ctx context.Context, snapshotter string) ([]Snapshot, error) {
	var out []Snapshot
	err := c.Client.SnapshotService(snapshotter).Walk(c.ctx(ctx), func(_ context.Context, i snapshots.Info) error {
		out = append(out, Snapshot{Key: i.Name, Kind: i.Kind.String(), Created: i.Created})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing snapshots of %s: %w", snapshotter, err)
	}
	return out, nil
}

// Leases implements Containerd.
func (c ContainerdClient) Leases(ctx context.Context) ([]Lease, error) {
	list, err := c.Client.LeasesService().List(c.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing leases: %w", err)
	}
	out := make([]Lease, 0, len(list))
	for _, l := range list {
		out = append(out, Lease{ID: l.ID, Labels: l.Labels, CreatedAt: l.CreatedAt})
	}
	return out, nil
}

// SandboxRecords implements Containerd.
func (c ContainerdClient) SandboxRecords(ctx context.Context) ([]Lease, error) {
	list, err := c.Client.SandboxStore().List(c.ctx(ctx), fmt.Sprintf("labels.%q==%q", sandbox.LabelKind, sandbox.KindSandbox))
	if err != nil {
		if errdefs.IsNotImplemented(err) {
			return nil, nil // containerd 1.6: no sandbox store
		}
		return nil, fmt.Errorf("listing sandbox records: %w", err)
	}
	out := make([]Lease, 0, len(list))
	for _, r := range list {
		out = append(out, Lease{ID: r.ID, Labels: r.Labels, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// DeleteSandboxRecord implements Containerd.
func (c ContainerdClient) DeleteSandboxRecord(ctx context.Context, id string) error {
	if err := c.Client.SandboxStore().Delete(c.ctx(ctx), id); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting sandbox record %s: %w", id, err)
	}
	return nil
}

// ProcessExists implements Containerd.
func (c ContainerdClient) ProcessExists(ctx context.Context, id, execID string) (bool, error) {
	_, err := c.Client.TaskService().Get(c.ctx(ctx), &tasksapi.GetRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		err = errgrpc.ToNative(err)
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// DeleteTask implements Containerd: SIGKILL to every process of the task,
// wait up to 10 s for it to stop, delete it.
//
// containerd's task API finds a task through its container record, so a task
// whose record is gone cannot be reached. For those a temporary record with
// the task's ID (labelled TemporaryRecordLabel, no other content) is made for
// the time of the kill and delete.
func (c ContainerdClient) DeleteTask(ctx context.Context, id string) error {
	ctx = c.ctx(ctx)
	ts := c.Client.TaskService()
	cs := c.Client.ContainerService()
	if _, err := cs.Get(ctx, id); errdefs.IsNotFound(err) {
		_, err := cs.Create(ctx, containers.Container{
			ID:      id,
			Labels:  map[string]string{TemporaryRecordLabel: "delete the task of a lost container record"},
			Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		})
		if err != nil && !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("making a temporary record to reach task %s: %w", id, err)
		}
		if err == nil {
			defer func() {
				if err := cs.Delete(context.WithoutCancel(ctx), id); err != nil && !errdefs.IsNotFound(err) {
					klog.ErrorS(err, "Deleting the temporary container record", "id", id)
				}
			}()
		}
	}
	if _, err := ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		err = errgrpc.ToNative(err)
		if errdefs.IsNotFound(err) {
			return nil
		}
		if !errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("killing task %s: %w", id, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: id})
		if err != nil {
			if err = errgrpc.ToNative(err); errdefs.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("task %s: %w", id, err)
		}
		if resp.GetProcess().GetStatus() == tasktypes.Status_STOPPED || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: id}); err != nil {
		if err = errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			return fmt.Errorf("deleting task %s: %w", id, err)
		}
	}
	return nil
}

// RemoveSnapshot implements Containerd.
func (c ContainerdClient) RemoveSnapshot(ctx context.Context, snapshotter, key string) error {
	if err := c.Client.SnapshotService(snapshotter).Remove(c.ctx(ctx), key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing snapshot %s: %w", key, err)
	}
	return nil
}

// DeleteLease implements Containerd.
func (c ContainerdClient) DeleteLease(ctx context.Context, id string) error {
	if err := c.Client.LeasesService().Delete(c.ctx(ctx), leases.Lease{ID: id}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("deleting lease %s: %w", id, err)
	}
	return nil
}

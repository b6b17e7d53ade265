package container

import (
	"context"
	"encoding/json"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
)

// UpdateResources changes a container's resources: the stored spec first
// (so a restart keeps them), then the running task's cgroup, then the
// checkpointed status. Updates of one container are serialised (with each
// other and with the creation of its task, through ResourcesMu); when a
// later step fails, the earlier ones are rolled back, so the stored spec,
// the cgroup and the status keep agreeing. A container neither created nor
// running fails with errdefs.ErrFailedPrecondition.
func (c *Controller) UpdateResources(ctx context.Context, ctr *Container, r *runtimeapi.LinuxContainerResources) error {
	ctr.ResourcesMu.Lock()
	defer ctr.ResourcesMu.Unlock()
	state := ctr.Status().State()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING && state != runtimeapi.ContainerState_CONTAINER_CREATED {
		return fmt.Errorf("container %s is in state %s: %w", ctr.ID, state, errdefs.ErrFailedPrecondition)
	}
	old, err := ctr.Container.Spec(ctx)
	if err != nil {
		return fmt.Errorf("loading spec of %s: %w", ctr.ID, err)
	}
	// UpdateResources changes the spec it is given: keep the old one intact
	// for the rollback.
	next, err := cloneSpec(old)
	if err != nil {
		return fmt.Errorf("copying spec of %s: %w", ctr.ID, err)
	}
	updated, err := c.o.SpecGen.UpdateResources(next, r, c.o.RestrictOOM)
	if err != nil {
		return fmt.Errorf("updating resources of %s: %w", ctr.ID, err)
	}
	if err := storeSpec(ctx, ctr.Container, updated); err != nil {
		return fmt.Errorf("storing spec of %s: %w", ctr.ID, err)
	}
	var task containerd.Task // set once its cgroup was changed
	rollback := func() {
		cctx, cancel := backend.CleanupCtx(ctx)
		defer cancel()
		if task != nil && old.Linux != nil && old.Linux.Resources != nil {
			if err := task.Update(cctx, containerd.WithResources(old.Linux.Resources)); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Rollback: restoring cgroup resources", "containerID", ctr.ID)
			}
		}
		if err := storeSpec(cctx, ctr.Container, old); err != nil {
			klog.ErrorS(err, "Rollback: restoring stored spec", "containerID", ctr.ID)
		}
	}
	if state == runtimeapi.ContainerState_CONTAINER_RUNNING && updated.Linux != nil && updated.Linux.Resources != nil {
		t, err := ctr.Container.Task(ctx, nil)
		switch {
		case errdefs.IsNotFound(err):
			// The container exited meanwhile: only the spec matters.
		case err != nil:
			rollback()
			return fmt.Errorf("loading task of %s: %w", ctr.ID, err)
		default:
			err := t.Update(ctx, containerd.WithResources(updated.Linux.Resources))
			switch {
			case errdefs.IsNotFound(err):
				// Exited meanwhile.
			case err != nil:
				rollback()
				return fmt.Errorf("updating cgroup of %s: %w", ctr.ID, err)
			default:
				task = t
			}
		}
	}
	if err := ctr.Update(func(st *Status) error {
		st.Resources = CloneResources(r)
		st.SpecUpdated = true
		return nil
	}); err != nil {
		rollback()
		return fmt.Errorf("checkpointing resources of %s: %w", ctr.ID, err)
	}
	return nil
}

// CloneResources is the ContainerResources holding a copy of r (nil for nil).
func CloneResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.ContainerResources {
	if r == nil {
		return nil
	}
	return &runtimeapi.ContainerResources{Linux: proto.Clone(r).(*runtimeapi.LinuxContainerResources)}
}

// storeSpec replaces the spec stored in containerd for ctr.
func storeSpec(ctx context.Context, ctr containerd.Container, spec *oci.Spec) error {
	a, err := typeurl.MarshalAny(spec)
	if err != nil {
		return fmt.Errorf("marshalling spec: %w", err)
	}
	return ctr.Update(ctx, func(_ context.Context, _ *containerd.Client, ci *containers.Container) error {
		ci.Spec = a
		return nil
	})
}

// cloneSpec returns a deep copy of spec.
func cloneSpec(spec *oci.Spec) (*oci.Spec, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	var out oci.Spec
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

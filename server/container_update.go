package server

import (
	"context"
	"encoding/json"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/container"
)

// UpdateContainerResources changes a container's resources: the stored spec
// first (so a restart keeps them), then the running task's cgroup, then the
// checkpointed status. Updates of one container are serialised (with each
// other and with the creation of its task); when a later step fails, the
// earlier ones are rolled back, so the stored spec, the cgroup and the status
// keep agreeing.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if r.GetLinux() == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	c.ResourcesMu.Lock()
	defer c.ResourcesMu.Unlock()
	state := c.Status().State()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING && state != runtimeapi.ContainerState_CONTAINER_CREATED {
		return nil, fmt.Errorf("container %s is in state %s: %w", c.ID, state, errdefs.ErrFailedPrecondition)
	}
	old, err := c.Container.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading spec of %s: %w", c.ID, err)
	}
	// UpdateResources changes the spec it is given: keep the old one intact
	// for the rollback.
	next, err := cloneSpec(old)
	if err != nil {
		return nil, fmt.Errorf("copying spec of %s: %w", c.ID, err)
	}
	updated, err := s.specGen.UpdateResources(next, r.GetLinux(), s.restrictOOM)
	if err != nil {
		return nil, fmt.Errorf("updating resources of %s: %w", c.ID, err)
	}
	if err := storeSpec(ctx, c.Container, updated); err != nil {
		return nil, fmt.Errorf("storing spec of %s: %w", c.ID, err)
	}
	var task containerd.Task // set once its cgroup was changed
	rollback := func() {
		cctx, cancel := backend.CleanupCtx(ctx)
		defer cancel()
		if task != nil && old.Linux != nil && old.Linux.Resources != nil {
			if err := task.Update(cctx, containerd.WithResources(old.Linux.Resources)); err != nil && !errdefs.IsNotFound(err) {
				klog.ErrorS(err, "Rollback: restoring cgroup resources", "containerID", c.ID)
			}
		}
		if err := storeSpec(cctx, c.Container, old); err != nil {
			klog.ErrorS(err, "Rollback: restoring stored spec", "containerID", c.ID)
		}
	}
	if state == runtimeapi.ContainerState_CONTAINER_RUNNING && updated.Linux != nil && updated.Linux.Resources != nil {
		t, err := c.Container.Task(ctx, nil)
		switch {
		case errdefs.IsNotFound(err):
			// The container exited meanwhile: only the spec matters.
		case err != nil:
			rollback()
			return nil, fmt.Errorf("loading task of %s: %w", c.ID, err)
		default:
			err := t.Update(ctx, containerd.WithResources(updated.Linux.Resources))
			switch {
			case errdefs.IsNotFound(err):
				// Exited meanwhile.
			case err != nil:
				rollback()
				return nil, fmt.Errorf("updating cgroup of %s: %w", c.ID, err)
			default:
				task = t
			}
		}
	}
	if err := c.Update(func(st *container.Status) error {
		st.Resources = cloneResources(r.GetLinux())
		return nil
	}); err != nil {
		rollback()
		return nil, fmt.Errorf("checkpointing resources of %s: %w", c.ID, err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
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

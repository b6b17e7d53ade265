package server

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
)

// UpdateContainerResources changes a container's resources: the stored spec
// first (so a restart keeps them), then the running task's cgroup.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if r.GetLinux() == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	state := c.Status().State()
	if state != runtimeapi.ContainerState_CONTAINER_RUNNING && state != runtimeapi.ContainerState_CONTAINER_CREATED {
		return nil, fmt.Errorf("container %s is in state %s: %w", c.ID, state, errdefs.ErrFailedPrecondition)
	}
	old, err := c.Container.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading spec of %s: %w", c.ID, err)
	}
	updated, err := s.specGen.UpdateResources(old, r.GetLinux(), s.restrictOOM)
	if err != nil {
		return nil, fmt.Errorf("updating resources of %s: %w", c.ID, err)
	}
	if err := c.Container.Update(ctx, func(ctx context.Context, _ *containerd.Client, ci *containers.Container) error {
		a, err := typeurl.MarshalAny(updated)
		if err != nil {
			return err
		}
		ci.Spec = a
		return nil
	}); err != nil {
		return nil, fmt.Errorf("storing spec of %s: %w", c.ID, err)
	}
	if state == runtimeapi.ContainerState_CONTAINER_RUNNING && updated.Linux != nil && updated.Linux.Resources != nil {
		task, err := c.Container.Task(ctx, nil)
		if err != nil {
			return nil, fmt.Errorf("loading task of %s: %w", c.ID, err)
		}
		if err := task.Update(ctx, containerd.WithResources(updated.Linux.Resources)); err != nil {
			return nil, fmt.Errorf("updating cgroup of %s: %w", c.ID, err)
		}
	}
	if err := c.Update(func(st *container.Status) error {
		st.Resources = cloneResources(r.GetLinux())
		return nil
	}); err != nil {
		klog.ErrorS(err, "Checkpointing resources", "containerID", c.ID)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// UpdatePodSandboxResources records the pod's new resources. With the
// cgroupfs driver the pod cgroup is owned by kubelet, which has already
// resized it; containers are updated by their own UpdateContainerResources.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	klog.V(2).InfoS("Pod sandbox resources updated", "podSandboxID", sb.ID, "resources", r.GetResources(), "overhead", r.GetOverhead())
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources changes a container's resources
// (container.Controller.UpdateResources: stored spec, then cgroup, then
// checkpointed status, rolled back together on failure). A request without
// Linux resources changes nothing.
func (s *Service) UpdateContainerResources(ctx context.Context, r *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if r.GetLinux() == nil {
		return &runtimeapi.UpdateContainerResourcesResponse{}, nil
	}
	res, err := s.nri.updateContainer(ctx, c, r.GetLinux())
	if err != nil {
		return nil, err
	}
	if err := s.ctrs().UpdateResources(ctx, c, res); err != nil {
		return nil, err
	}
	s.nri.postUpdateContainer(ctx, c)
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

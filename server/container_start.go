package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerio"
)

// StartContainer starts a created container (see container.Controller.Start).
func (s *Service) StartContainer(ctx context.Context, r *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	if err := s.ctrs().Start(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

// newContainerIO makes the IO of a container (see container.Controller.NewIO).
func (s *Service) newContainerIO(c *container.Container) (*containerio.ContainerIO, error) {
	return s.ctrs().NewIO(c)
}

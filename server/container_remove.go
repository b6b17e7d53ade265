package server

import (
	"context"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer force-stops the container if needed and removes it, its
// snapshot, its FIFOs and its name (container.Controller.Remove). A missing
// container is not an error.
func (s *Service) RemoveContainer(ctx context.Context, r *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &runtimeapi.RemoveContainerResponse{}, nil
		}
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	if err := s.ctrs().Remove(ctx, c); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// removeSandboxContainers removes every container of a sandbox.
func (s *Service) removeSandboxContainers(ctx context.Context, sandboxID string) error {
	return s.ctrs().RemoveAll(ctx, sandboxID)
}

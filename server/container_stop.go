package server

import (
	"context"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer sends the image's stop signal (SIGTERM by default), waits up
// to the timeout, then SIGKILLs (container.Controller.Stop). Stopping a
// container that is not running, or gone, is not an error.
func (s *Service) StopContainer(ctx context.Context, r *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Idempotent: a container that is gone is stopped.
			return &runtimeapi.StopContainerResponse{}, nil
		}
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	if err := s.ctrs().Stop(ctx, c, time.Duration(r.GetTimeout())*time.Second); err != nil {
		return nil, err
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// stopSandboxContainers stops every container of a sandbox at once (no grace period).
func (s *Service) stopSandboxContainers(ctx context.Context, sandboxID string) error {
	return s.ctrs().StopAll(ctx, sandboxID)
}

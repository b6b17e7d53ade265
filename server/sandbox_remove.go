package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox stops the sandbox if needed (its containers, then the
// sandbox), removes its containers (container controller), then the
// sandbox's own resources (sandbox controller). Removing a sandbox that does
// not exist is not an error.
func (s *Service) RemovePodSandbox(ctx context.Context, r *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	ctx = s.nsCtx(ctx)
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return &runtimeapi.RemovePodSandboxResponse{}, nil
		}
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, fmt.Errorf("stopping sandbox before removal: %w", err)
	}
	if err := s.removeSandboxContainers(ctx, sb.ID); err != nil {
		return nil, err
	}
	if err := s.sandboxController().Remove(ctx, sb); err != nil {
		return nil, err
	}
	s.nri.removePod(ctx, sb)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

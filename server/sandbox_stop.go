package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// StopPodSandbox stops every container of the pod, the pause task, tears the
// network down (CNI DEL always attempted, with the ADD arguments, also when
// the netns is already gone) and removes the netns. It is idempotent; a
// teardown error is returned and the teardown is retried on the next call.
func (s *Service) StopPodSandbox(ctx context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	ctx = s.nsCtx(ctx)
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Idempotent: nothing left to reclaim.
			return &runtimeapi.StopPodSandboxResponse{}, nil
		}
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	if err := s.stopSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// stopSandbox stops the pod's containers (container controller), then the
// sandbox itself: pause task, network, image volumes, shm (sandbox
// controller).
func (s *Service) stopSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if err := s.stopSandboxContainers(ctx, sb.ID); err != nil {
		return fmt.Errorf("stopping containers of sandbox %s: %w", sb.ID, err)
	}
	s.nri.stopPod(ctx, sb)
	return s.sandboxController().Stop(ctx, sb)
}

package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
)

// CreateContainer creates a container in a ready sandbox (see
// container.Controller.Create).
func (s *Service) CreateContainer(ctx context.Context, r *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	ctx = s.nsCtx(ctx)
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil || cfg.GetMetadata().GetName() == "" {
		return nil, fmt.Errorf("container config with metadata name is required: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("container image is required: %w", errdefs.ErrInvalidArgument)
	}
	defer s.nri.blockSync().Unblock()
	c, err := s.ctrs().Create(ctx, container.CreateRequest{
		SandboxID:     r.GetPodSandboxId(),
		Config:        cfg,
		SandboxConfig: r.GetSandboxConfig(),
	})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// containerName is the unique CRI name of a container.
func containerName(c *runtimeapi.ContainerMetadata, sb *runtimeapi.PodSandboxMetadata) string {
	return container.Name(c, sb)
}

func containerAnnotations(id, name, sandboxID string, sbCfg *runtimeapi.PodSandboxConfig, image string) map[string]string {
	return container.Annotations(id, name, sandboxID, sbCfg, image)
}

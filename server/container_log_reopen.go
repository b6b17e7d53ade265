package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ReopenContainerLog makes the next log line go to a fresh file at the log
// path (kubelet renamed the old one for rotation); no line is lost.
func (s *Service) ReopenContainerLog(ctx context.Context, r *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	cio := c.IO()
	if c.Status().State() != runtimeapi.ContainerState_CONTAINER_RUNNING || cio == nil {
		return nil, fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecondition)
	}
	if err := cio.ReopenLog(); err != nil {
		return nil, fmt.Errorf("reopening log of %s: %w", c.ID, err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

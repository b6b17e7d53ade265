package server

import (
	"context"
)

// recoverContainers rebuilds the container store from containerd and the
// checkpointed status files (see container.Controller.Recover).
func (s *Service) recoverContainers(ctx context.Context) error {
	return s.ctrs().Recover(ctx)
}

package server

import (
	"context"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/recovery"
)

// recoveryRunner runs recoveries (package recovery) with the configured
// bound and deadline.
func (s *Service) recoveryRunner() recovery.Runner {
	return recovery.Runner{Concurrency: s.config.RecoveryConcurrency, Timeout: s.config.RecoveryTimeout.Duration}
}

// boundedEach runs f(i) for i in [0, n), at most config.RecoveryConcurrency
// at once, each with a context that ends after config.RecoveryTimeout.
func (s *Service) boundedEach(ctx context.Context, n int, f func(ctx context.Context, i int)) {
	s.recoveryRunner().Each(ctx, n, f)
}

// recoverSandboxes rebuilds the sandbox store from containerd (see
// sandbox.Controller.Recover).
func (s *Service) recoverSandboxes(ctx context.Context) error {
	if err := s.sandboxController().Recover(ctx); err != nil {
		return err
	}
	if err := s.sandboxController().RemoveOrphanRecords(ctx); err != nil {
		// Not fatal: an orphan record holds nothing but its name.
		klog.ErrorS(err, "Removing orphan containerd sandbox records")
	}
	return nil
}

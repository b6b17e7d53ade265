package server

import (
	"context"
	"sync"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerio"
)

// containerCtl is the container controller of a Service, built once (New
// builds it; unit tests, which swap deps after making the Service, on first
// use) from the Service's dependencies, stores and hooks.
type containerCtl struct {
	once sync.Once
	c    *container.Controller
}

// ctrs returns the container controller (container stop, remove, exits,
// OOM kills and the reconciliation of tasks with containerd).
func (s *Service) ctrs() *container.Controller {
	s.ctrCtl.once.Do(func() {
		s.ctrCtl.c = container.NewController(container.Options{
			Config:          s.config,
			Deps:            s.deps,
			Store:           s.containers,
			Names:           s.containerNames,
			Sandboxes:       s.sandboxes,
			HandlerFeatures: s.handlerFeatures,
			LogErrors:       s.logErrors(),
			Go: func(f func(context.Context)) bool {
				return s.bg.Go(f)
			},
			Each:    s.boundedEach,
			OnEvent: s.emitContainerEvent,
			ReapShims: func(c *container.Container) {
				handler := "" // the default runtime, if the pod is gone
				if sb, err := s.sandboxes.Get(c.SandboxID); err == nil {
					if sb.GetMetadata().ShimGroup {
						// containerd made its task in the pause's shim: no
						// shim process was ever started for its ID.
						return
					}
					handler = sb.RuntimeHandler
				}
				s.reapShims(c.ID, handler)
			},
			Recovery:       s.recoveryRunner(),
			Leftovers:      s.leftovers,
			SignalDirect:   s.signalDirect,
			CleanupTimeout: cleanupTimeout,
			SpecGen:        s.specGen,
			RestrictOOM:    s.restrictOOM,
			Hooks:          nriContainerHooks{s.nri},
		})
	})
	return s.ctrCtl.c
}

// logErrors is the log write error counter (nil without metrics).
func (s *Service) logErrors() *containerio.LogErrorReporter {
	if s.metrics == nil {
		return nil
	}
	return s.metrics.logErrors
}

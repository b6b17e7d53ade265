package server

import (
	"context"
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// cleanupTimeout bounds each rollback step, which runs on a context that is
// not cancelled with the request's.
const cleanupTimeout = backend.CleanupTimeout

// RunPodSandbox creates and starts a pod sandbox: name reservation, pause
// image, netns, pod files, the containerd container (metadata persisted
// before anything that could leak), CNI, then the pause task. Every step
// undoes itself when a later one fails.
func (s *Service) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	ctx = s.nsCtx(ctx)
	cfg := r.GetConfig()
	if err := validateSandboxConfig(cfg); err != nil {
		return nil, err
	}
	if err := s.checkUserNamespaces(cfg, r.GetRuntimeHandler()); err != nil {
		return nil, err
	}
	defer s.nri.blockSync().Unblock()
	id, err := s.sandboxController().Run(ctx, cfg, r.GetRuntimeHandler())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// sandboxCtl is the sandbox controller of a Service, built once (New
// builds it; unit tests, which swap deps after making the Service, on first
// use) from the Service's dependencies, stores and hooks.
type sandboxCtl struct {
	once sync.Once
	c    *sandbox.Controller
}

// sandboxController returns the sandbox controller (run, stop, remove,
// pause exits, recovery of sandboxes).
func (s *Service) sandboxController() *sandbox.Controller {
	s.sbCtl.once.Do(func() {
		s.sbCtl.c = sandbox.NewController(sandbox.Options{
			Config:              s.config,
			Deps:                s.deps,
			Store:               s.sandboxes,
			Names:               s.sandboxNames,
			Hooks:               nriSandboxHooks{s.nri},
			SpecGen:             s.specGen,
			RestrictOOMScoreAdj: s.restrictOOM,
			PodCIDRs:            s.podCIDRs,
			ObserveCNI:          s.observeCNI,
			OnEvent:             s.emitSandboxEvent,
			ImageVolumes:        podImageVolumes{s},
			Each:                s.boundedEach,
			ReapShims:           s.reapShims,
			ContainerdEpoch:     s.ctrdEpoch.Load,
			Recovery:            s.recoveryRunner(),
			Leftovers:           s.leftovers,
			SignalDirect:        s.signalDirect,
			ShimGroups:          s.shimGroups,
		})
	})
	return s.sbCtl.c
}

// podImageVolumes gives the sandbox controller the release of the image
// volumes the pod's containers mounted.
type podImageVolumes struct{ s *Service }

func (v podImageVolumes) Unmount(sandboxID string) error { return v.s.unmountImageVolumes(sandboxID) }

func (v podImageVolumes) Remove(ctx context.Context, sandboxID, snapshotter string) {
	v.s.removeImageVolumes(ctx, sandboxID, snapshotter)
}

func validateSandboxConfig(cfg *runtimeapi.PodSandboxConfig) error {
	if cfg == nil {
		return fmt.Errorf("sandbox config is required: %w", errdefs.ErrInvalidArgument)
	}
	md := cfg.GetMetadata()
	if md == nil || md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return fmt.Errorf("sandbox metadata name, namespace and uid are required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// sandboxName is the unique CRI name of a pod sandbox.
func sandboxName(md *runtimeapi.PodSandboxMetadata) string { return sandbox.Name(md) }

func newID() string { return sandbox.NewID() }

func sandboxAnnotations(id string, cfg *runtimeapi.PodSandboxConfig) map[string]string {
	return sandbox.Annotations(id, cfg)
}

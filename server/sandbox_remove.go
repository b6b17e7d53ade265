package server

import (
	"context"
	"fmt"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// RemovePodSandbox stops the sandbox if needed, removes its containers, the
// containerd container and snapshot, its files and its name. Removing a
// sandbox that does not exist is not an error.
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
	sb.StopMu.Lock()
	defer sb.StopMu.Unlock()
	if _, rt, err := s.config.RuntimeFor(sb.RuntimeHandler); err == nil {
		s.removeImageVolumes(ctx, sb.ID, s.config.SnapshotterFor(rt))
	}
	if err := sb.Container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("deleting containerd container of sandbox %s: %w", sb.ID, err)
	}
	s.reapShims(sb.ID, sb.RuntimeHandler)
	if err := s.removeSandboxFiles(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sb.ID)); err != nil {
		return nil, err
	}
	s.nri.removePod(ctx, sb)
	s.sandboxes.Delete(sb.ID)
	s.sandboxNames.ReleaseByID(sb.ID)
	s.emitSandboxEvent(sb, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (s *Service) removeSandboxFiles(p sandbox.Paths) error {
	if err := s.deps.Host.UnmountShm(p.ShmPath()); err != nil {
		return err
	}
	for _, d := range []string{p.RootDir, p.StateDir, p.NetNSDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	return nil
}

package server

import (
	"context"

	"github.com/cri-containerd/cri-containerd/imagevolume"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// The image volumes of a sandbox (package imagevolume): the container
// controller mounts them at create; the sandbox's stop and remove undo them.

func imageVolumeLease(sandboxID string) string { return imagevolume.LeaseID(sandboxID) }

func (s *Service) imageVolumesDir(sandboxID string) string {
	return imagevolume.Dir(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sandboxID).StateDir)
}

// unmountImageVolumes unmounts a sandbox's image volumes (stop).
func (s *Service) unmountImageVolumes(sandboxID string) error {
	return imagevolume.Unmount(s.imageVolumesDir(sandboxID))
}

// removeImageVolumes drops a sandbox's image-volume snapshots and lease (remove).
func (s *Service) removeImageVolumes(ctx context.Context, sandboxID, snapshotter string) {
	imagevolume.Remove(ctx, s.deps.Containerd, s.imageVolumesDir(sandboxID), sandboxID, snapshotter)
}

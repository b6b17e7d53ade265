package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/image-spec/identity"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// imageVolumeLease holds the image-volume snapshots of one sandbox.
func imageVolumeLease(sandboxID string) string { return "cri-containerd-imagevolumes-" + sandboxID }

func imageVolumesDir(p sandbox.Paths) string { return filepath.Join(p.StateDir, "image-volumes") }

// mountImageVolumes resolves every CRI mount of kind "image": the image is
// unpacked, a read-only view of its rootfs is mounted once per sandbox under
// the sandbox's state dir, and the mount's host path is pointed at it (or at
// the requested sub path). The mounts are changed in place.
func (s *Service) mountImageVolumes(ctx context.Context, sandboxID, snapshotter string, mounts []*runtimeapi.Mount) error {
	var needed bool
	for _, m := range mounts {
		if m.GetImage() != nil {
			needed = true
		}
	}
	if !needed {
		return nil
	}
	if _, err := s.deps.Containerd.LeasesService().Create(ctx, leases.WithID(imageVolumeLease(sandboxID))); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("creating image volume lease: %w", err)
	}
	lctx := leases.WithLease(ctx, imageVolumeLease(sandboxID))
	for _, m := range mounts {
		if m.GetImage() == nil {
			continue
		}
		if err := s.mountImageVolume(lctx, sandboxID, snapshotter, m); err != nil {
			return fmt.Errorf("%w: %w", crierrors.ErrImageVolumeMountFailed, err)
		}
	}
	return nil
}

func (s *Service) mountImageVolume(ctx context.Context, sandboxID, snapshotter string, m *runtimeapi.Mount) error {
	if m.GetHostPath() != "" {
		return fmt.Errorf("host path must be empty for an image mount at %q: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	if !m.GetReadonly() {
		return fmt.Errorf("image mount at %q must be read-only: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	ref := m.GetImage().GetImage()
	img, err := s.deps.Images.Get(ref)
	if err != nil {
		return fmt.Errorf("image volume %q: %w", ref, err)
	}
	cimg, err := backend.FindImage(ctx, s.deps.Containerd, []string{img.ID}, img.RepoTags, img.RepoDigests)
	if err != nil {
		return fmt.Errorf("image volume %q: %w", ref, err)
	}
	target := filepath.Join(imageVolumesDir(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sandboxID)), cimg.Target().Digest.Encoded())
	mounted, err := mountinfo.Mounted(target)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checking %s: %w", target, err)
	}
	if !mounted {
		if err := cimg.Unpack(ctx, snapshotter); err != nil {
			return fmt.Errorf("unpacking image volume %q: %w", ref, err)
		}
		diffIDs, err := cimg.RootFS(ctx)
		if err != nil {
			return fmt.Errorf("reading rootfs of %q: %w", ref, err)
		}
		sn := s.deps.Containerd.SnapshotService(snapshotter)
		key := imageVolumeSnapshotKey(sandboxID, cimg.Target().Digest.Encoded())
		mnts, err := sn.View(ctx, key, identity.ChainID(diffIDs).String())
		if errdefs.IsAlreadyExists(err) {
			mnts, err = sn.Mounts(ctx, key)
		}
		if err != nil {
			return fmt.Errorf("preparing image volume snapshot %q: %w", ref, err)
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", target, err)
		}
		if err := mount.All(mnts, target); err != nil {
			_ = mount.UnmountAll(target, 0)
			return fmt.Errorf("mounting image volume %q: %w", ref, err)
		}
	}
	hostPath := target
	if sub := m.GetImageSubPath(); sub != "" {
		clean := filepath.Clean("/" + sub)
		p := filepath.Join(target, clean)
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("image sub path %q: %w", sub, errdefs.ErrInvalidArgument)
		}
		if real != target && !strings.HasPrefix(real, target+"/") {
			return fmt.Errorf("image sub path %q escapes the image: %w", sub, errdefs.ErrInvalidArgument)
		}
		hostPath = real
	}
	m.HostPath = hostPath
	m.Image.ImageRef = img.ID
	return nil
}

func imageVolumeSnapshotKey(sandboxID, digest string) string {
	return "cri-containerd-imagevolume-" + sandboxID + "-" + digest
}

// unmountImageVolumes unmounts a sandbox's image volumes (stop).
func (s *Service) unmountImageVolumes(sandboxID string) error {
	dir := imageVolumesDir(sandbox.PathsFor(s.config.RootDir, s.config.StateDir, sandboxID))
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		target := filepath.Join(dir, e.Name())
		if err := mount.UnmountAll(target, 0); err != nil {
			return fmt.Errorf("unmounting image volume %s: %w", target, err)
		}
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// removeImageVolumes drops a sandbox's image-volume snapshots and lease (remove).
func (s *Service) removeImageVolumes(ctx context.Context, sandboxID, snapshotter string) {
	if err := s.unmountImageVolumes(sandboxID); err != nil {
		klog.ErrorS(err, "Unmounting image volumes", "podSandboxID", sandboxID)
	}
	sn := s.deps.Containerd.SnapshotService(snapshotter)
	prefix := imageVolumeSnapshotKey(sandboxID, "")
	var keys []string
	_ = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, prefix) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	for _, k := range keys {
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			klog.ErrorS(err, "Removing image volume snapshot", "key", k)
		}
	}
	if err := s.deps.Containerd.LeasesService().Delete(ctx, leases.Lease{ID: imageVolumeLease(sandboxID)}); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Deleting image volume lease", "podSandboxID", sandboxID)
	}
}

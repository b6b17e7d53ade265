// Package imagevolume mounts the images that CRI mounts of kind "image" ask
// for: each image is unpacked and a read-only view of its rootfs is mounted
// once per sandbox under the sandbox's state dir, held by a lease of the
// sandbox. Containers mount them (Mount); the sandbox unmounts them when it
// stops (Unmount) and drops their snapshots and lease when it is removed
// (Remove).
package imagevolume

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
)

// LeaseID is the lease that holds the image-volume snapshots of one sandbox.
func LeaseID(sandboxID string) string { return "cri-containerd-imagevolumes-" + sandboxID }

// Dir is where a sandbox's image volumes are mounted, given the sandbox's
// state dir.
func Dir(sandboxStateDir string) string { return filepath.Join(sandboxStateDir, "image-volumes") }

// SnapshotKey is the key of the snapshot of one image (digest) of a sandbox.
func SnapshotKey(sandboxID, digest string) string {
	return "cri-containerd-imagevolume-" + sandboxID + "-" + digest
}

// Needed reports whether any of mounts is an image volume.
func Needed(mounts []*runtimeapi.Mount) bool {
	for _, m := range mounts {
		if m.GetImage() != nil {
			return true
		}
	}
	return false
}

// Mount resolves every CRI mount of kind "image" in mounts: the image is
// unpacked, a read-only view of its rootfs is mounted once per sandbox under
// dir (see Dir), and the mount's host path is pointed at it (or at the
// requested sub path). The mounts are changed in place.
func Mount(ctx context.Context, ctrd backend.Containerd, images backend.Images, dir, sandboxID, snapshotter string, mounts []*runtimeapi.Mount) error {
	if !Needed(mounts) {
		return nil
	}
	if _, err := ctrd.LeasesService().Create(ctx, leases.WithID(LeaseID(sandboxID))); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("creating image volume lease: %w", err)
	}
	lctx := leases.WithLease(ctx, LeaseID(sandboxID))
	for _, m := range mounts {
		if m.GetImage() == nil {
			continue
		}
		if err := mountOne(lctx, ctrd, images, dir, sandboxID, snapshotter, m); err != nil {
			return fmt.Errorf("%w: %w", crierrors.ErrImageVolumeMountFailed, err)
		}
	}
	return nil
}

func mountOne(ctx context.Context, ctrd backend.Containerd, images backend.Images, dir, sandboxID, snapshotter string, m *runtimeapi.Mount) error {
	if m.GetHostPath() != "" {
		return fmt.Errorf("host path must be empty for an image mount at %q: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	if !m.GetReadonly() {
		return fmt.Errorf("image mount at %q must be read-only: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	ref := m.GetImage().GetImage()
	img, err := images.Get(ref)
	if err != nil {
		return fmt.Errorf("image volume %q: %w", ref, err)
	}
	cimg, err := backend.FindImage(ctx, ctrd, []string{img.ID}, img.RepoTags, img.RepoDigests)
	if err != nil {
		return fmt.Errorf("image volume %q: %w", ref, err)
	}
	target := filepath.Join(dir, cimg.Target().Digest.Encoded())
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
		sn := ctrd.SnapshotService(snapshotter)
		key := SnapshotKey(sandboxID, cimg.Target().Digest.Encoded())
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

// Unmount unmounts the image volumes mounted under dir (a sandbox stops).
func Unmount(dir string) error {
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

// Remove unmounts a sandbox's image volumes (under dir) and drops their
// snapshots and lease (a sandbox is removed). Failures are logged.
func Remove(ctx context.Context, ctrd backend.Containerd, dir, sandboxID, snapshotter string) {
	if err := Unmount(dir); err != nil {
		klog.ErrorS(err, "Unmounting image volumes", "podSandboxID", sandboxID)
	}
	sn := ctrd.SnapshotService(snapshotter)
	prefix := SnapshotKey(sandboxID, "")
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
	if err := ctrd.LeasesService().Delete(ctx, leases.Lease{ID: LeaseID(sandboxID)}); err != nil && !errdefs.IsNotFound(err) {
		klog.ErrorS(err, "Deleting image volume lease", "podSandboxID", sandboxID)
	}
}

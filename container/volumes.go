package container

import (
	"context"
	"errors"
	"fmt"
	"os"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/continuity/fs"
)

// withImageVolumeContent fills the host directories that back the image
// config's VOLUMEs with what the image has at those paths (as Docker and
// containerd's CRI do), reading the container's fresh snapshot through a
// read-only temporary mount. It must follow WithNewSnapshot. vols maps
// container paths to host directories.
func withImageVolumeContent(rootfs *preparedRootfs, vols map[string]string) containerd.NewContainerOpts {
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		if len(vols) == 0 {
			return nil
		}
		if c.Snapshotter == "" || c.SnapshotKey == "" {
			return errors.New("image volumes need the container's snapshot")
		}
		mounts, err := rootfs.snapshotMounts(ctx, client, c.Snapshotter, c.SnapshotKey)
		if err != nil {
			return fmt.Errorf("snapshot mounts: %w", err)
		}
		mounts = mount.RemoveVolatileOption(mounts)
		return mount.WithReadonlyTempMount(ctx, mounts, func(root string) error {
			for dst, host := range vols {
				if err := copyVolumeContent(root, dst, host); err != nil {
					return fmt.Errorf("image volume %s: %w", dst, err)
				}
			}
			return nil
		})
	}
}

// copyVolumeContent copies <root>/<dst> (resolved inside root) into host,
// which must be new or empty; a path the image lacks leaves host empty.
func copyVolumeContent(root, dst, host string) error {
	src, err := fs.RootPath(root, dst)
	if err != nil {
		return err
	}
	if _, err := os.Stat(src); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if err := os.MkdirAll(host, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(host)
	if err != nil {
		return err
	}
	if len(entries) != 0 {
		return fmt.Errorf("%s is not empty", host)
	}
	return fs.CopyDir(host, src, fs.WithXAttrExclude("security.selinux"))
}

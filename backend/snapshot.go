package backend

import (
	"context"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/opencontainers/image-spec/identity"
)

// WithNewSnapshot makes a new container's writable rootfs snapshot (key
// id) on an image. With ID-remapping options (user namespaces) it is
// containerd.WithNewSnapshot, which resolves them. Without, it prepares the
// snapshot on the image's chain ID as containerd.WithNewSnapshot does,
// without its two kinds of round trips: the image store already knows the
// chain ID (no reading of the manifest and config again; img, which may
// then be nil, is only read when chainID is empty), and no snapshotter
// capabilities are asked for (containerd only needs them for ID-remapped
// snapshots). The snapshot is made under the create's lease, like the
// container. prepared, if set, gets the mounts Prepare returned (not called
// on the remapped path), for the steps of the create that need them.
func WithNewSnapshot(id, snapshotter, chainID string, img containerd.Image, remap []snapshots.Opt, prepared func([]mount.Mount)) containerd.NewContainerOpts {
	if len(remap) > 0 {
		return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
			if img == nil {
				return fmt.Errorf("an ID-remapped snapshot needs the image record")
			}
			c.Snapshotter = snapshotter
			return containerd.WithNewSnapshot(id, img, remap...)(ctx, client, c)
		}
	}
	return func(ctx context.Context, client *containerd.Client, c *containers.Container) error {
		parent := chainID
		if parent == "" {
			if img == nil {
				return fmt.Errorf("neither the chain ID nor the image record of the rootfs is known")
			}
			diffIDs, err := img.RootFS(ctx)
			if err != nil {
				return err
			}
			parent = identity.ChainID(diffIDs).String()
		}
		mounts, err := client.SnapshotService(snapshotter).Prepare(ctx, id, parent)
		if err != nil {
			return err
		}
		if prepared != nil {
			prepared(mounts)
		}
		c.Snapshotter = snapshotter
		c.SnapshotKey = id
		return nil
	}
}

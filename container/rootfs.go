package container

import (
	"context"
	"slices"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// preparedRootfs remembers the mounts that Prepare returned for a
// container's new rootfs snapshot, so that the steps of the same create
// that read the image's files (the user and group lookups of the spec, the
// content of image volumes) do not each ask containerd for them again: one
// round trip saved per lookup (a kubelet container with runAsUser makes two).
type preparedRootfs struct {
	snapshotter, key string
	mounts           []mount.Mount
}

// set records the snapshot Prepare made.
func (p *preparedRootfs) set(snapshotter, key string, mounts []mount.Mount) {
	if p == nil {
		return
	}
	p.snapshotter, p.key, p.mounts = snapshotter, key, cloneMounts(mounts)
}

// known reports whether the mounts of snapshotter/key are recorded.
func (p *preparedRootfs) known(snapshotter, key string) bool {
	return p != nil && p.mounts != nil && p.snapshotter == snapshotter && p.key == key
}

// snapshotMounts returns the mounts of snapshotter/key: the recorded ones,
// else containerd's.
func (p *preparedRootfs) snapshotMounts(ctx context.Context, client *containerd.Client, snapshotter, key string) ([]mount.Mount, error) {
	if p.known(snapshotter, key) {
		return cloneMounts(p.mounts), nil
	}
	return client.SnapshotService(snapshotter).Mounts(ctx, key)
}

// withSpecOpts applies opts as one spec option whose client answers the
// Mounts of the prepared snapshot from the record (oci.WithUser,
// oci.WithAdditionalGIDs and the like ask the client for them).
func (p *preparedRootfs) withSpecOpts(opts ...oci.SpecOpts) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
		if client != nil && p.known(c.Snapshotter, c.SnapshotKey) {
			client = preparedClient{Client: client, p: p}
		}
		return oci.ApplyOpts(ctx, client, c, s, opts...)
	}
}

type preparedClient struct {
	oci.Client
	p *preparedRootfs
}

func (c preparedClient) SnapshotService(name string) snapshots.Snapshotter {
	s := c.Client.SnapshotService(name)
	if name != c.p.snapshotter {
		return s
	}
	return preparedSnapshotter{Snapshotter: s, p: c.p}
}

type preparedSnapshotter struct {
	snapshots.Snapshotter
	p *preparedRootfs
}

func (s preparedSnapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	if key == s.p.key {
		return cloneMounts(s.p.mounts), nil
	}
	return s.Snapshotter.Mounts(ctx, key)
}

// cloneMounts copies mounts deeply: callers may change the options.
func cloneMounts(ms []mount.Mount) []mount.Mount {
	if ms == nil {
		return nil
	}
	out := make([]mount.Mount, len(ms))
	for i, m := range ms {
		out[i] = m
		out[i].Options = slices.Clone(m.Options)
	}
	return out
}

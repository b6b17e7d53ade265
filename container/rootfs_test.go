package container

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// countingClient is an oci.Client whose snapshotters count Mounts calls.
type countingClient struct{ calls map[string]int }

func (c *countingClient) SnapshotService(name string) snapshots.Snapshotter {
	return countingSnapshotter{name: name, c: c}
}

type countingSnapshotter struct {
	snapshots.Snapshotter
	name string
	c    *countingClient
}

func (s countingSnapshotter) Mounts(_ context.Context, key string) ([]mount.Mount, error) {
	s.c.calls[s.name+"/"+key]++
	return []mount.Mount{{Type: "bind", Source: "/containerd/" + key}}, nil
}

// TestPreparedRootfsAnswersMounts: the spec options of a create read the
// mounts of the snapshot it prepared from the record, not from containerd;
// any other snapshot, or a create that recorded none, still asks containerd.
func TestPreparedRootfsAnswersMounts(t *testing.T) {
	ctx := context.Background()
	prepared := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}}}
	ask := func(snapshotter, key string) oci.SpecOpts {
		return func(ctx context.Context, client oci.Client, _ *containers.Container, _ *oci.Spec) error {
			m, err := client.SnapshotService(snapshotter).Mounts(ctx, key)
			if err != nil || len(m) != 1 {
				t.Errorf("Mounts(%s/%s) = %v, %v", snapshotter, key, m, err)
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name      string
		record    bool
		snap, key string
		asked     int
	}{
		{"the prepared snapshot", true, "overlayfs", "ctr-1", 0},
		{"another key", true, "overlayfs", "ctr-2", 1},
		{"another snapshotter", true, "native", "ctr-1", 1},
		{"nothing recorded", false, "overlayfs", "ctr-1", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &countingClient{calls: map[string]int{}}
			p := &preparedRootfs{}
			if tc.record {
				p.set("overlayfs", "ctr-1", prepared)
			}
			c := &containers.Container{ID: "ctr-1", Snapshotter: "overlayfs", SnapshotKey: "ctr-1"}
			if err := p.withSpecOpts(ask(tc.snap, tc.key), ask(tc.snap, tc.key))(ctx, client, c, &oci.Spec{}); err != nil {
				t.Fatal(err)
			}
			if got := client.calls[tc.snap+"/"+tc.key]; got != 2*tc.asked {
				t.Errorf("containerd asked %d times, want %d", got, 2*tc.asked)
			}
		})
	}
	// A caller changing the mounts it got does not change the record.
	p := &preparedRootfs{}
	p.set("overlayfs", "ctr-1", prepared)
	m, _ := p.snapshotMounts(ctx, nil, "overlayfs", "ctr-1")
	m[0].Options[0] = "changed"
	if m2, _ := p.snapshotMounts(ctx, nil, "overlayfs", "ctr-1"); m2[0].Options[0] != "lowerdir=/l" {
		t.Errorf("record changed: %v", m2)
	}
}

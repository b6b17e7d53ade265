package config

import (
	"testing"

	"github.com/containerd/errdefs"
)

func TestRuntimeFor(t *testing.T) {
	c := Default()
	c.DefaultRuntimeName = "runc"
	c.Snapshotter = "overlayfs"
	c.CgroupDriver = "cgroupfs"
	c.Runtimes = map[string]Runtime{
		"runc": {Type: "io.containerd.runc.v2", BinaryName: "runc"},
		"kata": {Type: "io.containerd.kata.v2", Snapshotter: "devmapper", SystemdCgroup: true},
	}
	for _, tc := range []struct {
		handler, wantName, wantSnap string
		wantSystemd, wantErr        bool
	}{
		{"", "runc", "overlayfs", false, false},
		{"runc", "runc", "overlayfs", false, false},
		{"kata", "kata", "devmapper", true, false},
		{"nope", "", "", false, true},
	} {
		name, rt, err := c.RuntimeFor(tc.handler)
		if tc.wantErr {
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("RuntimeFor(%q) err = %v, want InvalidArgument", tc.handler, err)
			}
			continue
		}
		if err != nil || name != tc.wantName {
			t.Fatalf("RuntimeFor(%q) = %q, %v", tc.handler, name, err)
		}
		if got := c.SnapshotterFor(rt); got != tc.wantSnap {
			t.Errorf("SnapshotterFor(%q) = %q, want %q", name, got, tc.wantSnap)
		}
		if got := c.RuncOptions(rt).SystemdCgroup; got != tc.wantSystemd {
			t.Errorf("RuncOptions(%q).SystemdCgroup = %v, want %v", name, got, tc.wantSystemd)
		}
	}
	c.CgroupDriver = "systemd"
	if _, rt, _ := c.RuntimeFor("runc"); !c.SystemdCgroup(rt) {
		t.Error("the systemd cgroup driver must apply to every runtime")
	}
}

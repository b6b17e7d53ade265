package sandbox

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
)

// TestRemoveReapsShimsOnlyWhenContainerdMayHaveLostThem: Remove scans for
// forgotten shims unless this process made the pod's pause task and
// containerd's event stream has not broken since (no containerd restart).
func TestRemoveReapsShimsOnlyWhenContainerdMayHaveLostThem(t *testing.T) {
	for _, tc := range []struct {
		name      string
		epoch     bool // Options.ContainerdEpoch set
		breakLate bool // the stream breaks between Run and Remove
		recovered bool // the sandbox is one recovery loaded
		wantReap  bool
	}{
		{name: "no epoch", wantReap: true},
		{name: "no break", epoch: true},
		{name: "break after run", epoch: true, breakLate: true, wantReap: true},
		{name: "recovered", epoch: true, recovered: true, wantReap: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRunEnv(t)
			var epoch atomic.Uint64
			var reaped []string
			e.o.ReapShims = func(id, _ string) { reaped = append(reaped, id) }
			if tc.epoch {
				e.o.ContainerdEpoch = epoch.Load
			}
			e.c = NewController(e.o)
			ctx := context.Background()
			id, err := e.c.Run(ctx, testPod("web"), "")
			if err != nil {
				t.Fatal(err)
			}
			if tc.breakLate {
				epoch.Add(1)
			}
			sb, _ := e.o.Store.Get(id)
			if tc.recovered {
				sb.runEpoch = 0
			}
			if err := e.c.Remove(ctx, sb); err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(reaped, id); got != tc.wantReap {
				t.Errorf("reaped = %v, want reap %v", reaped, tc.wantReap)
			}
		})
	}
}

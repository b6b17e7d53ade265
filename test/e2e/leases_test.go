package e2e

import (
	"context"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestRegressionTemporaryLeaseLeakedByKill: a daemon killed during a pull or
// a container create left that operation's lease behind, pinning content and
// snapshots for 24 h (found by the fault campaign: 7 leases and the 7
// snapshots they pinned after 20 kill -9). Those leases are now labelled and
// deleted at the next start; other leases are left alone, and a create
// leaves no lease behind.
func TestRegressionTemporaryLeaseLeakedByKill(t *testing.T) {
	e := newCtrEnv(t)
	cli, err := containerd.New(e.env.ContainerdAddress)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), e.d.Opts.Namespace), 2*time.Minute)
	defer cancel()
	lm := cli.LeasesService()

	// A pod and a container: their creates must leave no lease.
	podID, podCfg := e.runPod("leases")
	e.run(podID, podCfg, framework.NewContainerConfig("app", framework.BusyboxImageRef, "sleep", "3600"))
	if ls, err := lm.List(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, l := range ls {
			if l.Labels[image.TemporaryLeaseLabel] != "" {
				t.Errorf("lease %s (%v) outlived its operation", l.ID, l.Labels)
			}
		}
	}

	// What a daemon killed mid-pull leaves, and a lease somebody else owns.
	stale, err := lm.Create(ctx, image.TemporaryLeaseOpts("pull", 24*time.Hour)...)
	if err != nil {
		t.Fatal(err)
	}
	other, err := lm.Create(ctx, leases.WithID("someone-elses-lease"))
	if err != nil {
		t.Fatal(err)
	}
	e.d.Restart()

	ls, err := lm.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, l := range ls {
		found[l.ID] = true
	}
	if found[stale.ID] {
		t.Errorf("the temporary lease %s of a killed pull survived the restart", stale.ID)
	}
	if !found[other.ID] {
		t.Errorf("the restart deleted lease %s, which is not ours", other.ID)
	}
	_ = lm.Delete(ctx, other)
}

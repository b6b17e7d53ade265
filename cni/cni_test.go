package cni

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/cri-containerd/cri-containerd/cni/cnitest"
)

// hangGuard bounds waits for things that must happen; it only turns a hang
// into a failure and says nothing about speed.
const hangGuard = time.Minute

func networks(m *Manager) []string {
	var names []string
	if c := m.Config(); c != nil {
		for _, n := range c.Networks {
			names = append(names, n.Config.Name)
		}
	}
	return names
}

func newTestManager(t *testing.T) (*Manager, *cnitest.Plugin) {
	t.Helper()
	p := cnitest.Install(t)
	m, err := New(p.ConfDir, []string{p.BinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}
	m.setLoopbackUp = func(string) error { return nil } // the namespaces are fake
	return m, p
}

// A CNI ADD that takes long (a slow IPAM, a hung plugin) must not hold up a
// configuration reload, nor Status (kubelet's readiness) and the ADD of other
// pods behind that reload: each call works on a snapshot of the configuration.
func TestRegressionCNIReloadBlockedBehindSlowAdd(t *testing.T) {
	m, p := newTestManager(t)

	p.Set(t, cnitest.BlockAdd, true)
	t.Cleanup(func() { p.Set(t, cnitest.BlockAdd, false) })
	setupDone := make(chan error, 1)
	go func() {
		_, err := m.Setup(context.Background(), "slow-pod", "/var/run/netns/fake-slow", PodArgs{})
		setupDone <- err
	}()
	p.WaitFor(t, cnitest.AddBlocked)

	// While that ADD is blocked: a new configuration appears, is reloaded,
	// and Status answers.
	p.WriteConf(t, "05-other.conflist", "othernet")
	reloaded := make(chan error, 1)
	go func() {
		m.Sync()
		reloaded <- m.Status()
	}()
	select {
	case err := <-reloaded:
		if err != nil {
			t.Fatalf("Status after reload: %v", err)
		}
	case err := <-setupDone:
		t.Fatalf("the blocked ADD returned (%v) before the reload", err)
	case <-time.After(hangGuard):
		t.Fatal("reload and Status are stuck behind a blocked CNI ADD")
	}
	if !p.Exists(cnitest.AddBlocked) || !p.Exists(cnitest.BlockAdd) {
		t.Fatal("the ADD is no longer blocked")
	}
	if got := networks(m); !slices.Contains(got, "othernet") {
		t.Errorf("networks after reload = %v, want othernet", got)
	}

	// The ADD in flight finishes on the configuration it started with.
	p.Set(t, cnitest.BlockAdd, false)
	select {
	case err := <-setupDone:
		if err != nil {
			t.Fatalf("blocked ADD: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the released ADD never returned")
	}
	if err := m.Remove(context.Background(), "slow-pod", "", PodArgs{}); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got := p.Allocations(t); len(got) != 0 {
		t.Errorf("allocations left: %v", got)
	}
}

// Run watches the config directory: a change is picked up without a poll
// (the resync period here is an hour).
func TestManagerRunReloadsOnChange(t *testing.T) {
	m, p := newTestManager(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Run(ctx, time.Hour)
	}()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(hangGuard)
	for i := 0; !slices.Contains(networks(m), "othernet"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("configuration not reloaded; networks %v", networks(m))
		}
		if i%20 == 0 {
			// Rewritten until seen: the watch may not be in place yet.
			p.WriteConf(t, "05-other.conflist", "othernet")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Status(); err != nil {
		t.Errorf("Status: %v", err)
	}
}

func TestManagerNotReadyWithoutConfig(t *testing.T) {
	p := cnitest.Install(t)
	m, err := New(t.TempDir(), []string{p.BinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Status(); err == nil {
		t.Fatal("Status is ready without a configuration")
	}
	if _, err := m.Setup(context.Background(), "pod", "/var/run/netns/x", PodArgs{}); err == nil {
		t.Fatal("Setup succeeded without a configuration")
	}
}

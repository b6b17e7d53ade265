package stats

import (
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestUsageNanoCores(t *testing.T) {
	type step struct {
		at    time.Duration // since t0
		usage uint64        // cumulative ns
		rate  uint64
		ok    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first sample has no rate", []step{{0, 1e9, 0, false}}},
		{"half a core", []step{{0, 1e9, 0, false}, {2 * time.Second, 2e9, 5e8, true}}},
		{"two cores", []step{{0, 0, 0, false}, {10 * time.Second, 20e9, 2e9, true}}},
		{"idle", []step{{0, 5e9, 0, false}, {10 * time.Second, 5e9, 0, true}}},
		{"big counters do not overflow", []step{{0, 1 << 62, 0, false}, {100 * time.Second, 1<<62 + 400e9, 4e9, true}}},
		{"same reading reuses the rate", []step{{0, 0, 0, false}, {time.Second, 1e9, 1e9, true}, {time.Second, 1e9, 1e9, true}}},
		{"same reading before any rate", []step{{0, 0, 0, false}, {0, 0, 0, false}}},
		{"older reading reuses the rate", []step{{0, 0, 0, false}, {4 * time.Second, 2e9, 5e8, true}, {3 * time.Second, 1e9, 5e8, true}}},
		// A close second poll must not measure over a tiny window.
		{"close poll reuses the rate", []step{{0, 0, 0, false}, {4 * time.Second, 2e9, 5e8, true}, {4*time.Second + 10*time.Millisecond, 2e9 + 9e6, 5e8, true},
			// and the next rate is measured from the last used sample (4s), not from the close one.
			{6 * time.Second, 4e9, 1e9, true}}},
		{"close poll before any rate still measures", []step{{0, 0, 0, false}, {500 * time.Millisecond, 1e8, 2e8, true}}},
		{"counter reset restarts", []step{{0, 5e9, 0, false}, {2 * time.Second, 1e9, 0, false}, {4 * time.Second, 3e9, 1e9, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCollector()
			for i, s := range tc.steps {
				rate, ok := c.UsageNanoCores("k", s.usage, t0.Add(s.at))
				if rate != s.rate || ok != s.ok {
					t.Fatalf("step %d: got (%d, %v), want (%d, %v)", i, rate, ok, s.rate, s.ok)
				}
			}
		})
	}
}

func TestCollectorKeysAreSeparate(t *testing.T) {
	c := NewCollector()
	c.UsageNanoCores(ContainerKey("x"), 0, t0)
	c.UsageNanoCores(SandboxKey("x"), 100e9, t0)
	if r, _ := c.UsageNanoCores(ContainerKey("x"), 1e9, t0.Add(time.Second)); r != 1e9 {
		t.Errorf("container rate %d", r)
	}
	if r, _ := c.UsageNanoCores(SandboxKey("x"), 102e9, t0.Add(time.Second)); r != 2e9 {
		t.Errorf("sandbox rate %d", r)
	}
	c.Forget(ContainerKey("x"))
	if c.Len() != 1 {
		t.Errorf("Len after Forget = %d", c.Len())
	}
}

func TestCollectorGC(t *testing.T) {
	c := NewCollector()
	now := t0
	c.now = func() time.Time { return now }
	c.UsageNanoCores("old", 0, t0)
	now = now.Add(5 * time.Minute)
	c.UsageNanoCores("fresh", 0, t0)
	now = now.Add(6 * time.Minute) // "old" unseen for 11m, "fresh" for 6m
	c.UsageNanoCores("fresh", 1e9, t0.Add(time.Second))
	if c.Len() != 1 {
		t.Fatalf("stale entry not collected: %d entries", c.Len())
	}
	if _, ok := c.UsageNanoCores("old", 1e9, t0.Add(time.Second)); ok {
		t.Error("collected entry must start over")
	}
}

func TestFillNanoCores(t *testing.T) {
	c := NewCollector()
	c.FillNanoCores("k", nil)                                // no panic
	c.FillNanoCores("k", &runtimeapi.CpuUsage{Timestamp: 1}) // no usage: ignored
	first := &runtimeapi.CpuUsage{Timestamp: t0.UnixNano(), UsageCoreNanoSeconds: u64(0)}
	c.FillNanoCores("k", first)
	if first.UsageNanoCores != nil {
		t.Error("first sample must leave UsageNanoCores unset")
	}
	second := &runtimeapi.CpuUsage{Timestamp: t0.Add(2 * time.Second).UnixNano(), UsageCoreNanoSeconds: u64(1e9)}
	c.FillNanoCores("k", second)
	if second.GetUsageNanoCores().GetValue() != 5e8 {
		t.Errorf("UsageNanoCores = %v", second.UsageNanoCores)
	}
}

func TestCollectorConcurrent(t *testing.T) {
	c := NewCollector()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c.UsageNanoCores(ContainerKey(string(rune('a'+g))), uint64(i)*1e9, t0.Add(time.Duration(i)*time.Second))
			}
		})
	}
	wg.Wait()
	if c.Len() != 8 {
		t.Errorf("Len = %d", c.Len())
	}
}

package stats

import (
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// minRateInterval: a sample closer than this to the previous one reuses
	// the last rate instead of computing a noisy one over a tiny window (two
	// clients polling back to back).
	minRateInterval = time.Second
	// staleAfter: entries not sampled for this long belong to removed
	// containers/pods and are dropped.
	staleAfter = 10 * time.Minute
	// gcInterval bounds how often stale entries are looked for.
	gcInterval = time.Minute
)

type cpuSample struct {
	at    time.Time // sample time (from the cgroup reading)
	usage uint64    // cumulative CPU nanoseconds
}

type cpuState struct {
	last     cpuSample
	rate     uint64
	haveRate bool
	seen     time.Time // wall clock of the last update, for GC
}

// Collector holds the previous CPU sample of each container and pod, to
// compute UsageNanoCores from successive cumulative readings. It is safe for
// concurrent use. The zero value is not usable: call NewCollector.
type Collector struct {
	mu     sync.Mutex
	cpu    map[string]*cpuState
	lastGC time.Time
	now    func() time.Time
}

// NewCollector returns an empty collector.
func NewCollector() *Collector {
	return &Collector{cpu: map[string]*cpuState{}, now: time.Now}
}

// ContainerKey and SandboxKey namespace the collector's keys, so that a pod
// and its pause container (same ID) do not share a sample.
func ContainerKey(id string) string { return "container/" + id }

// SandboxKey is the collector key of a pod's aggregate CPU usage.
func SandboxKey(id string) string { return "sandbox/" + id }

// UsageNanoCores records the cumulative CPU usage (ns) of key at time at
// and returns the average rate since the previous sample in nanocores. ok is
// false when there is no rate yet (first sample, or the counter went back,
// e.g. a pod cgroup that lost a container).
func (c *Collector) UsageNanoCores(key string, usage uint64, at time.Time) (rate uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	c.gcLocked(now)
	st, found := c.cpu[key]
	if !found {
		c.cpu[key] = &cpuState{last: cpuSample{at: at, usage: usage}, seen: now}
		return 0, false
	}
	st.seen = now
	dt := at.Sub(st.last.at)
	switch {
	case dt <= 0:
		// Same (or older) reading: nothing new to measure.
		return st.rate, st.haveRate
	case usage < st.last.usage:
		// Counter reset: restart from this sample.
		*st = cpuState{last: cpuSample{at: at, usage: usage}, seen: now}
		return 0, false
	case dt < minRateInterval && st.haveRate:
		return st.rate, true
	}
	st.rate = uint64(float64(usage-st.last.usage) / float64(dt.Nanoseconds()) * float64(time.Second))
	st.haveRate = true
	st.last = cpuSample{at: at, usage: usage}
	return st.rate, true
}

// FillNanoCores sets cpu.UsageNanoCores from the collector, when a rate is
// known. A nil cpu or one without UsageCoreNanoSeconds is left alone.
func (c *Collector) FillNanoCores(key string, cpu *runtimeapi.CpuUsage) {
	if cpu == nil || cpu.UsageCoreNanoSeconds == nil {
		return
	}
	if rate, ok := c.UsageNanoCores(key, cpu.UsageCoreNanoSeconds.Value, time.Unix(0, cpu.Timestamp)); ok {
		cpu.UsageNanoCores = u64(rate)
	}
}

// Forget drops the sample of key (e.g. when a container is removed).
func (c *Collector) Forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cpu, key)
}

// Len is the number of tracked keys.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cpu)
}

func (c *Collector) gcLocked(now time.Time) {
	if now.Sub(c.lastGC) < gcInterval {
		return
	}
	c.lastGC = now
	for k, st := range c.cpu {
		if now.Sub(st.seen) > staleAfter {
			delete(c.cpu, k)
		}
	}
}

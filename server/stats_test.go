package server

import (
	"context"
	"testing"
	"time"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/stats"
)

// statsService is a Service with stores and a collector but no containerd:
// enough for everything in the stats handlers that does not fetch metrics.
func statsService(t *testing.T) *Service {
	t.Helper()
	s := &Service{
		config:     config.Default(),
		sandboxes:  sandbox.NewStore(),
		containers: container.NewStore(),
		stats:      stats.NewCollector(),
	}
	addPod := func(id string, ready bool, labels map[string]string) {
		sb := sandbox.New(sandbox.Metadata{ID: id, CreatedAt: time.Now().UnixNano(), Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod-" + id, Namespace: "ns", Uid: id},
			Labels:   labels,
		}})
		if ready {
			sb.SetReady(100)
		} else {
			sb.SetNotReady(0, time.Now())
		}
		if err := s.sandboxes.Add(sb); err != nil {
			t.Fatal(err)
		}
	}
	addCtr := func(id, pod string, labels map[string]string) {
		c := container.New(container.Metadata{ID: id, SandboxID: pod, CreatedAt: time.Now().UnixNano(), Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "ctr-" + id},
			Labels:   labels,
		}}, t.TempDir(), container.Status{})
		if err := s.containers.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	addPod("pod1aaaa", true, map[string]string{"app": "a"})
	addPod("pod2bbbb", true, map[string]string{"app": "b"})
	addPod("pod3cccc", false, map[string]string{"app": "a"})
	addCtr("ctr1aaaa", "pod1aaaa", map[string]string{"foo": "bar"})
	addCtr("ctr2bbbb", "pod1aaaa", map[string]string{"foo": "baz"})
	addCtr("ctr3cccc", "pod2bbbb", map[string]string{"foo": "bar"})
	addCtr("ctr4dddd", "pod3cccc", nil)
	return s
}

func ids[T any](items []T, id func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func ctrID(c *container.Container) string { return c.ID }
func sbID(sb *sandbox.Sandbox) string     { return sb.ID }

func equalSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

func TestContainersForStats(t *testing.T) {
	s := statsService(t)
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerStatsFilter
		want   []string
	}{
		{"no filter", nil, []string{"ctr1aaaa", "ctr2bbbb", "ctr3cccc", "ctr4dddd"}},
		{"id", &runtimeapi.ContainerStatsFilter{Id: "ctr2bbbb"}, []string{"ctr2bbbb"}},
		{"id prefix", &runtimeapi.ContainerStatsFilter{Id: "ctr3"}, []string{"ctr3cccc"}},
		{"unknown id", &runtimeapi.ContainerStatsFilter{Id: "nope"}, []string{}},
		{"pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: "pod1"}, []string{"ctr1aaaa", "ctr2bbbb"}},
		{"unknown pod", &runtimeapi.ContainerStatsFilter{PodSandboxId: "nope"}, []string{}},
		{"labels", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"foo": "bar"}}, []string{"ctr1aaaa", "ctr3cccc"}},
		{"labels no match", &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"foo": "qux"}}, []string{}},
		{"pod and labels", &runtimeapi.ContainerStatsFilter{PodSandboxId: "pod1aaaa", LabelSelector: map[string]string{"foo": "bar"}}, []string{"ctr1aaaa"}},
		{"id in other pod", &runtimeapi.ContainerStatsFilter{Id: "ctr3cccc", PodSandboxId: "pod1aaaa"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(s.containersForStats(tc.filter), ctrID); !equalSet(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSandboxesForStats(t *testing.T) {
	s := statsService(t)
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.PodSandboxStatsFilter
		want   []string
	}{
		{"ready only", nil, []string{"pod1aaaa", "pod2bbbb"}},
		{"id prefix", &runtimeapi.PodSandboxStatsFilter{Id: "pod2"}, []string{"pod2bbbb"}},
		{"not ready by id", &runtimeapi.PodSandboxStatsFilter{Id: "pod3cccc"}, []string{}},
		{"labels", &runtimeapi.PodSandboxStatsFilter{LabelSelector: map[string]string{"app": "a"}}, []string{"pod1aaaa"}},
		{"unknown", &runtimeapi.PodSandboxStatsFilter{Id: "nope"}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(s.sandboxesForStats(tc.filter), sbID); !equalSet(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func v1Sample(id string, at time.Time, cpuNs, mem, pids uint64) *stats.Sample {
	return &stats.Sample{ID: id, Timestamp: at, V1: &cg1.Metrics{
		CPU:    &cg1.CPUStat{Usage: &cg1.CPUUsage{Total: cpuNs}},
		Memory: &cg1.MemoryStat{Usage: &cg1.MemoryEntry{Usage: mem}, TotalRSS: mem / 2},
		Pids:   &cg1.PidsStat{Current: pids},
	}}
}

func TestPodSandboxStatsSummed(t *testing.T) {
	s := statsService(t)
	ctx := context.Background()
	t0 := time.Unix(1700000000, 0)
	sb, _ := s.sandboxes.Get("pod1aaaa")
	pods := s.podInputs([]*sandbox.Sandbox{sb})
	// pod1 has no cgroup parent: its usage is the sum of its containers and the pause task.
	samples := map[string]*stats.Sample{
		"ctr1aaaa": v1Sample("ctr1aaaa", t0, 2e9, 1000, 2),
		"pod1aaaa": v1Sample("pod1aaaa", t0, 1e9, 100, 1),
		// ctr2bbbb has no task (exited): no sample.
	}
	ps := s.podSandboxStats(ctx, pods[0], samples, nil, nil)
	if ps.Attributes.Id != "pod1aaaa" || ps.Attributes.Metadata.Name != "pod-pod1aaaa" || ps.Attributes.Labels["app"] != "a" {
		t.Errorf("attributes = %v", ps.Attributes)
	}
	l := ps.Linux
	if l.Cpu.UsageCoreNanoSeconds.Value != 3e9 || l.Memory.UsageBytes.Value != 1100 || l.Process.ProcessCount.Value != 3 {
		t.Errorf("pod usage = cpu %v mem %v proc %v", l.Cpu, l.Memory, l.Process)
	}
	if l.Cpu.UsageNanoCores != nil || l.Network != nil {
		t.Errorf("first sample: nanocores %v network %v", l.Cpu.UsageNanoCores, l.Network)
	}
	if len(l.Containers) != 2 {
		t.Fatalf("containers = %d", len(l.Containers))
	}
	for _, cs := range l.Containers {
		switch cs.Attributes.Id {
		case "ctr1aaaa":
			if cs.Cpu.UsageCoreNanoSeconds.Value != 2e9 || cs.Memory.WorkingSetBytes.Value != 1000 {
				t.Errorf("ctr1 = %v", cs)
			}
		case "ctr2bbbb":
			if cs.Cpu != nil || cs.Memory != nil || cs.Attributes.Metadata.Name != "ctr-ctr2bbbb" {
				t.Errorf("exited container must have attributes and no usage: %v", cs)
			}
		}
	}

	// A second round two seconds later gives rates, per container and per pod.
	samples = map[string]*stats.Sample{
		"ctr1aaaa": v1Sample("ctr1aaaa", t0.Add(2*time.Second), 4e9, 1000, 2),
		"pod1aaaa": v1Sample("pod1aaaa", t0.Add(2*time.Second), 1e9, 100, 1),
	}
	ps = s.podSandboxStats(ctx, pods[0], samples, nil, nil)
	if got := ps.Linux.Cpu.GetUsageNanoCores().GetValue(); got != 1e9 {
		t.Errorf("pod nanocores = %d", got)
	}
	for _, cs := range ps.Linux.Containers {
		if cs.Attributes.Id == "ctr1aaaa" && cs.Cpu.GetUsageNanoCores().GetValue() != 1e9 {
			t.Errorf("container nanocores = %v", cs.Cpu.UsageNanoCores)
		}
	}
}

func TestPodSandboxStatsNotReady(t *testing.T) {
	s := statsService(t)
	sb, _ := s.sandboxes.Get("pod3cccc")
	ps := s.podSandboxStats(context.Background(), s.podInputs([]*sandbox.Sandbox{sb})[0], map[string]*stats.Sample{}, nil, nil)
	if ps.Linux.Cpu != nil || ps.Linux.Memory != nil || ps.Linux.Process != nil || len(ps.Linux.Containers) != 1 {
		t.Errorf("not-ready pod = %v", ps)
	}
}

func TestStatsNotFound(t *testing.T) {
	s := statsService(t)
	ctx := context.Background()
	if _, err := s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("ContainerStats: %v", err)
	}
	if _, err := s.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"}); !errdefs.IsNotFound(err) {
		t.Errorf("PodSandboxStats: %v", err)
	}
	if _, err := s.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ContainerStats without id: %v", err)
	}
}

func TestListMetricDescriptors(t *testing.T) {
	s := statsService(t)
	resp, err := s.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil || len(resp.Descriptors) == 0 {
		t.Fatalf("%v %v", resp, err)
	}
}

func TestForEachLimit(t *testing.T) {
	seen := make([]int, 50)
	forEachLimit(len(seen), 3, func(i int) { seen[i]++ })
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("item %d ran %d times", i, n)
		}
	}
	forEachLimit(0, 3, func(int) { t.Fatal("no items") })
}

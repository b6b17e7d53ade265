package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/stats"
)

// TestStatsAnswerFromSampler: the stats RPCs read each object's cgroup once
// per sampling period whatever the number of calls; the sampler watches the
// running containers and the ready pods (pause task when the pod has no
// cgroup parent), and CPU rates come from its own readings.
func TestStatsAnswerFromSampler(t *testing.T) {
	s := statsService(t)
	ctx := context.Background()
	// ctr1aaaa and ctr3cccc run; ctr2bbbb exited; ctr4dddd was only created.
	for id, st := range map[string]container.Status{
		"ctr1aaaa": {Pid: 11, CreatedAt: 1, StartedAt: 2},
		"ctr2bbbb": {CreatedAt: 1, StartedAt: 2, FinishedAt: 3},
		"ctr3cccc": {Pid: 13, CreatedAt: 1, StartedAt: 2},
	} {
		c, err := s.containers.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		c.UpdateMemory(func(s *container.Status) { *s = st })
	}
	now := time.Unix(1700000000, 0)
	var mu sync.Mutex
	var reads [][]string
	usage := uint64(0)
	read := func(_ context.Context, keys []string) map[string]*stats.Sample {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, slices.Sorted(slices.Values(keys)))
		usage += 1e9
		out := map[string]*stats.Sample{}
		for _, k := range keys {
			_, id := splitKey(k)
			out[k] = v1Sample(id, now, usage, 1000, 1)
		}
		return out
	}
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s.cgroupSamples = stats.NewSampler(10*time.Second, s.cgroupKeys, read,
		stats.WithClock[*stats.Sample](clock), stats.WithOnRead(s.recordCPU))

	s.cgroupSamples.SampleAll(ctx)
	want := []string{"container/ctr1aaaa", "container/ctr3cccc", "pause/pod1aaaa", "pause/pod2bbbb"}
	if len(reads) != 1 || !slices.Equal(reads[0], want) {
		t.Fatalf("period read %v, want %v", reads, want)
	}
	for range 3 {
		list, err := s.listContainerStats(ctx, nil)
		if err != nil || len(list) != 4 {
			t.Fatalf("ListContainerStats = %d stats, %v", len(list), err)
		}
		if _, err := s.podSandboxStatsList(ctx, s.sandboxesForStats(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if len(reads) != 1 {
		t.Errorf("stats calls within the period read again: %v", reads)
	}

	// The next period: a second reading one period later gives the rate
	// (1e9 ns of CPU over 10 s = 0.1 core), served to every caller alike.
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	s.cgroupSamples.SampleAll(ctx)
	for range 2 {
		list, _ := s.listContainerStats(ctx, nil)
		for _, cs := range list {
			running := cs.Attributes.Id == "ctr1aaaa" || cs.Attributes.Id == "ctr3cccc"
			if got := cs.GetCpu().GetUsageNanoCores().GetValue(); running && got != 1e8 {
				t.Errorf("%s: nanocores %d, want 1e8", cs.Attributes.Id, got)
			}
			if !running && cs.GetCpu() != nil {
				t.Errorf("%s has no task but cpu %v", cs.Attributes.Id, cs.GetCpu())
			}
		}
	}
	if len(reads) != 2 {
		t.Errorf("reads = %d, want 2 (one per period)", len(reads))
	}
}

// benchStatsService is a service with pods x perPod running containers
// whose readings come from a fake cgroup read, sampled once.
func benchStatsService(b testing.TB, pods, perPod int) *Service {
	s := &Service{sandboxes: sandboxStoreForBench(b, pods), containers: container.NewStore(), stats: stats.NewCollector()}
	for p := range pods {
		for c := range perPod {
			id := fmt.Sprintf("ctr-%03d-%d", p, c)
			ctr := container.New(container.Metadata{ID: id, SandboxID: fmt.Sprintf("pod-%03d", p), Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: id}, Labels: map[string]string{"app": "bench"},
			}}, b.TempDir(), container.Status{Pid: 1, CreatedAt: 1, StartedAt: 2})
			if err := s.containers.Add(ctr); err != nil {
				b.Fatal(err)
			}
		}
	}
	now := time.Now()
	read := func(_ context.Context, keys []string) map[string]*stats.Sample {
		out := make(map[string]*stats.Sample, len(keys))
		for _, k := range keys {
			_, id := splitKey(k)
			out[k] = v1Sample(id, now, 1e9, 1000, 1)
		}
		return out
	}
	s.cgroupSamples = stats.NewSampler(time.Hour, s.cgroupKeys, read, stats.WithOnRead(s.recordCPU))
	s.cgroupSamples.SampleAll(context.Background())
	return s
}

func sandboxStoreForBench(b testing.TB, pods int) *sandbox.Store {
	st := sandbox.NewStore()
	for p := range pods {
		id := fmt.Sprintf("pod-%03d", p)
		sb := sandbox.New(sandbox.Metadata{ID: id, Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: id, Namespace: "ns", Uid: id},
		}})
		sb.SetReady(100)
		if err := st.Add(sb); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// BenchmarkListContainerStats500 and BenchmarkListPodSandboxStats500: the
// stats RPCs over the sampler's readings of 100 pods x 5 running containers
// (issue 9 target: <= 50 ms per call with 500 containers).
func BenchmarkListContainerStats500(b *testing.B) {
	s := benchStatsService(b, 100, 5)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if list, err := s.listContainerStats(ctx, nil); err != nil || len(list) != 500 {
			b.Fatal(len(list), err)
		}
	}
}

func BenchmarkListPodSandboxStats500(b *testing.B) {
	s := benchStatsService(b, 100, 5)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if list, err := s.podSandboxStatsList(ctx, s.sandboxesForStats(nil)); err != nil || len(list) != 100 {
			b.Fatal(len(list), err)
		}
	}
}

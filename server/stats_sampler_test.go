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

// TestStatsWarmOnStart: a container that starts running and a pod that
// becomes ready are read in the background at once, in one batch, so that
// the next stats calls answer from the cache without reading; a removed
// container's reading is dropped.
func TestStatsWarmOnStart(t *testing.T) {
	s := statsService(t)
	var mu sync.Mutex
	var reads [][]string
	read := func(_ context.Context, keys []string) map[string]*stats.Sample {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, slices.Sorted(slices.Values(keys)))
		out := map[string]*stats.Sample{}
		for _, k := range keys {
			_, id := splitKey(k)
			out[k] = v1Sample(id, time.Now(), 1e9, 1000, 1)
		}
		return out
	}
	readsNow := func() [][]string { mu.Lock(); defer mu.Unlock(); return slices.Clone(reads) }
	s.cgroupSamples = stats.NewSampler(time.Hour, s.cgroupKeys, read,
		stats.WithOnRead(s.recordCPU), stats.WithWarmDelay[*stats.Sample](10*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.cgroupSamples.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitReads := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); len(readsNow()) < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("reads %v, want %d", readsNow(), n)
			}
		}
	}
	waitReads(1) // the first period: the two ready pods, no running container

	// A new pod becomes ready and two containers start.
	sb := sandbox.New(sandbox.Metadata{ID: "pod9zzzz", Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod-pod9zzzz", Namespace: "ns", Uid: "pod9zzzz"},
	}})
	sb.SetReady(109)
	if err := s.sandboxes.Add(sb); err != nil {
		t.Fatal(err)
	}
	s.emitSandboxEvent(sb, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	for _, id := range []string{"ctr1aaaa", "ctr3cccc"} {
		c, err := s.containers.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		c.UpdateMemory(func(st *container.Status) { *st = container.Status{Pid: 11, CreatedAt: 1, StartedAt: 2} })
		s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT)
	}
	waitReads(2)
	time.Sleep(30 * time.Millisecond) // a second batch would show by now
	want := []string{"container/ctr1aaaa", "container/ctr3cccc", "pause/pod9zzzz"}
	if got := readsNow(); len(got) != 2 || !slices.Equal(got[1], want) {
		t.Fatalf("warm-up reads %v, want one of %v", got[1:], want)
	}

	for range 2 {
		list, err := s.listContainerStats(ctx, nil)
		if err != nil || len(list) != 4 {
			t.Fatalf("ListContainerStats = %d stats, %v", len(list), err)
		}
		for _, cs := range list {
			running := cs.Attributes.Id == "ctr1aaaa" || cs.Attributes.Id == "ctr3cccc"
			if running != (cs.GetCpu() != nil) {
				t.Errorf("%s: cpu %v", cs.Attributes.Id, cs.GetCpu())
			}
		}
		if _, err := s.podSandboxStatsList(ctx, s.sandboxesForStats(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if got := readsNow(); len(got) != 2 {
		t.Errorf("stats calls after the warm-up read: %v", got[2:])
	}

	// Removal drops the reading.
	n := s.cgroupSamples.Len()
	c, _ := s.containers.Get("ctr1aaaa")
	s.emitContainerEvent(c, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT)
	if s.cgroupSamples.Len() != n-1 {
		t.Errorf("entries after removal = %d, want %d", s.cgroupSamples.Len(), n-1)
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

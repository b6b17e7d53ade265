package server

import (
	"context"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/stats"
)

// statsParallelism bounds the pods whose cgroup and netns are read at once.
const statsParallelism = 4

// PodSandboxStats returns the stats of one pod. A pod that is not ready has
// attributes and its containers' stats, but no pod-level CPU, memory or network.
func (s *Service) PodSandboxStats(ctx context.Context, r *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err // NotFound / InvalidArgument, naming the ID
	}
	out, err := s.podSandboxStatsList(s.nsCtx(ctx), []*sandbox.Sandbox{sb})
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: out[0]}, nil
}

// ListPodSandboxStats returns the stats of the ready pods matching the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, r *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	out, err := s.podSandboxStatsList(s.nsCtx(ctx), s.sandboxesForStats(r.GetFilter()))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: out}, nil
}

// sandboxesForStats applies a PodSandboxStatsFilter and keeps ready pods
// only (the others have no pod-level stats; kubelet ignores them).
func (s *Service) sandboxesForStats(f *runtimeapi.PodSandboxStatsFilter) []*sandbox.Sandbox {
	id := f.GetId()
	if id != "" {
		sb, err := s.sandboxes.Get(id)
		if err != nil {
			return nil
		}
		id = sb.ID
	}
	var out []*sandbox.Sandbox
	for _, sb := range s.sandboxes.List() {
		if id != "" && sb.ID != id {
			continue
		}
		if state, _ := sb.State(); state != sandbox.StateReady {
			continue
		}
		if !matchLabels(sb.GetMetadata().Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, sb)
	}
	return out
}

// podInput is a consistent snapshot of one pod for a stats call.
type podInput struct {
	md    sandbox.Metadata
	state sandbox.State
	pid   uint32
	ctrs  []*container.Container
}

// podInputs snapshots the pods and groups the containers by pod.
func (s *Service) podInputs(sbs []*sandbox.Sandbox) []podInput {
	byPod := map[string][]*container.Container{}
	for _, c := range s.containers.List() {
		byPod[c.SandboxID] = append(byPod[c.SandboxID], c)
	}
	in := make([]podInput, 0, len(sbs))
	for _, sb := range sbs {
		state, pid := sb.State()
		md := sb.GetMetadata()
		in = append(in, podInput{md: md, state: state, pid: pid, ctrs: byPod[md.ID]})
	}
	return in
}

// podSandboxStatsList computes the stats of pods from the samplers'
// readings of their containers, pod cgroups (or pause tasks, for pods whose
// usage must be summed) and network counters.
func (s *Service) podSandboxStatsList(ctx context.Context, sbs []*sandbox.Sandbox) ([]*runtimeapi.PodSandboxStats, error) {
	pods := s.podInputs(sbs)
	samples, podSamples := s.podSamples(ctx, pods)
	fs := s.newFsLookup(ctx)
	out := make([]*runtimeapi.PodSandboxStats, len(pods))
	forEachLimit(len(pods), statsParallelism, func(i int) {
		out[i] = s.podSandboxStats(ctx, pods[i], samples, podSamples[pods[i].md.ID], fs)
	})
	return out, nil
}

func (s *Service) podSandboxStats(ctx context.Context, p podInput, samples map[string]*stats.Sample, pod *stats.Sample, fs *fsLookup) *runtimeapi.PodSandboxStats {
	cfg := p.md.Config
	ps := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          p.md.ID,
			Metadata:    cfg.GetMetadata(),
			Labels:      cfg.GetLabels(),
			Annotations: cfg.GetAnnotations(),
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	var (
		cpus     []*runtimeapi.CpuUsage
		mems     []*runtimeapi.MemoryUsage
		pids     uint64
		havePids bool
	)
	addPids := func(sample *stats.Sample) {
		if cur, _, ok := sample.Pids(); ok {
			pids += cur
			havePids = true
		}
	}
	for _, c := range p.ctrs {
		sample := samples[c.ID]
		cs := s.containerStats(ctx, c, sample, fs)
		ps.Linux.Containers = append(ps.Linux.Containers, cs)
		cpus = append(cpus, cs.Cpu)
		mems = append(mems, cs.Memory)
		addPids(sample)
	}
	if p.state != sandbox.StateReady {
		return ps
	}
	now := time.Now()
	if pod != nil {
		// The pod cgroup holds every container and the pause process.
		ps.Linux.Cpu, ps.Linux.Memory, ps.Linux.Io = pod.CPU(), pod.Memory(), pod.IO()
		if cur, _, ok := pod.Pids(); ok {
			pids, havePids = cur, true
		}
	} else {
		pause := samples[p.md.ID]
		ps.Linux.Cpu = stats.SumCPU(append(cpus, pause.CPU())...)
		ps.Linux.Memory = stats.SumMemory(append(mems, pause.Memory())...)
		addPids(pause)
	}
	s.stats.FillNanoCores(stats.SandboxKey(p.md.ID), ps.Linux.Cpu)
	if havePids {
		ps.Linux.Process = &runtimeapi.ProcessUsage{Timestamp: now.UnixNano(), ProcessCount: &runtimeapi.UInt64Value{Value: pids}}
	}
	if ifaces := s.podNetwork(ctx, p.md, p.pid); ifaces != nil {
		ps.Linux.Network = stats.NetworkUsage(ifaces, now)
	}
	return ps
}

// podCgroupSample reads the pod cgroup (the sandbox's cgroup parent); nil
// when the pod has none or it cannot be read.
func podCgroupSample(md sandbox.Metadata) *stats.Sample {
	parent := md.Config.GetLinux().GetCgroupParent()
	if parent == "" {
		return nil
	}
	sample, err := stats.ReadCgroup(parent)
	if err != nil {
		klog.V(4).InfoS("Pod cgroup not readable, summing container usage", "podSandboxID", md.ID, "cgroupParent", parent, "err", err)
		return nil
	}
	return sample
}

// podInterfaces reads the counters of the pod's network namespace; nil for
// host-network pods and when the namespace cannot be read.
func podInterfaces(md sandbox.Metadata, pid uint32) []stats.InterfaceStats {
	if md.NetNSPath == "" || md.NetworkTornDown {
		return nil
	}
	ifaces, err := stats.ReadNetDev(md.NetNSPath, pid)
	if err != nil {
		klog.V(4).InfoS("Pod network counters not readable", "podSandboxID", md.ID, "netns", md.NetNSPath, "err", err)
		return nil
	}
	return ifaces
}

// podSamples returns the cgroup readings of the pods' running containers and
// pause tasks (by ID) and of the ready pods' cgroups (by sandbox ID).
func (s *Service) podSamples(ctx context.Context, pods []podInput) (tasks, podCgroups map[string]*stats.Sample) {
	var ctrs []*container.Container
	var ready []sandbox.Metadata
	for _, p := range pods {
		ctrs = append(ctrs, p.ctrs...)
		if p.state == sandbox.StateReady {
			ready = append(ready, p.md)
		}
	}
	return s.samplesFor(ctx, ctrs, ready)
}

// forEachLimit runs f(0..n-1) with at most limit calls at once.
func forEachLimit(n, limit int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

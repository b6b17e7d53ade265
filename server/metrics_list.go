package server

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs/pkg/errgrpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/stats"
)

// ListMetricDescriptors lists the cadvisor-style metrics ListPodSandboxMetrics returns.
func (s *Service) ListMetricDescriptors(ctx context.Context, r *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: stats.Descriptors()}, nil
}

// ListPodSandboxMetrics returns cadvisor-style metrics of every ready pod:
// pod-level cgroup and network metrics, and the metrics of its running containers.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, r *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.listPodSandboxMetrics(s.nsCtx(ctx))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

func (s *Service) listPodSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	pods := s.podInputs(s.sandboxesForStats(nil))
	samples, podSamples := s.podSamples(ctx, pods)
	fs := s.newFsLookup(ctx)
	out := make([]*runtimeapi.PodSandboxMetrics, len(pods))
	forEachLimit(len(pods), statsParallelism, func(i int) {
		out[i] = s.podSandboxMetrics(ctx, pods[i], samples, podSamples[pods[i].md.ID], fs)
	})
	return out, nil
}

func (s *Service) podSandboxMetrics(ctx context.Context, p podInput, samples map[string]*stats.Sample, pod *stats.Sample, fs *fsLookup) *runtimeapi.PodSandboxMetrics {
	now := time.Now()
	md := p.md.Config.GetMetadata()
	pm := &runtimeapi.PodSandboxMetrics{
		PodSandboxId: p.md.ID,
		Metrics: stats.PodMetrics(
			stats.Labels{Pod: md.GetName(), Namespace: md.GetNamespace(), ID: p.md.ID},
			pod, s.podNetwork(ctx, p.md, p.pid), now),
	}
	for _, c := range p.ctrs {
		sample := samples[c.ID]
		if sample == nil {
			continue // no running task: nothing to report, as cadvisor
		}
		info := s.containerMetricsInfo(ctx, c, fs)
		info.Labels = stats.Labels{Pod: md.GetName(), Namespace: md.GetNamespace(), Container: c.Config.GetMetadata().GetName(), ID: c.ID, Image: c.ImageName}
		pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
			ContainerId: c.ID,
			Metrics:     stats.ContainerMetrics(info, sample, now),
		})
	}
	return pm
}

// containerMetricsInfo gathers what a running container's metrics need
// besides its cgroup: start time, resources, processes and their file
// descriptors, and the writable layer.
func (s *Service) containerMetricsInfo(ctx context.Context, c *container.Container, fs *fsLookup) stats.ContainerInfo {
	st := c.Status()
	info := stats.ContainerInfo{StartedAt: st.StartedAt, Resources: st.Resources.GetLinux()}
	if info.Resources == nil {
		info.Resources = c.Config.GetLinux().GetResources()
	}
	if pids, err := s.taskPids(ctx, c.ID); err == nil {
		info.Processes, info.HaveProcesses = uint64(len(pids)), true
		info.FDs, info.Sockets = stats.CountFDs("/proc", pids)
		info.HaveFDs = true
	} else {
		klog.V(4).InfoS("Listing container processes failed", "containerID", c.ID, "err", err)
	}
	if u := fs.writableLayer(ctx, c); u != nil {
		usage := &stats.FsUsage{UsedBytes: u.size, InodesUsed: u.inodes}
		usage.Device, usage.Capacity = fs.filesystem(u.mountpoint)
		if usage.Device == "" {
			usage.Device = u.mountpoint
		}
		if usage.Capacity == nil && st.Pid != 0 {
			// The container's root is the overlay of its writable layer.
			if capa, err := stats.Statfs(fmt.Sprintf("/proc/%d/root", st.Pid)); err == nil {
				usage.Capacity = &capa
			}
		}
		info.Fs = usage
	}
	return info
}

// taskPidsWait bounds the shim's answer to ListPids: a metrics scrape
// reports a container whose shim does not answer without its process and
// file descriptor counts rather than waiting on it (the live fuzzer saw
// one hung shim hold ListPodSandboxMetrics for 30 s).
const taskPidsWait = time.Second

// taskPids lists the processes of a container's task.
func (s *Service) taskPids(ctx context.Context, id string) ([]uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, taskPidsWait)
	defer cancel()
	resp, err := s.deps.Containerd.TaskService().ListPids(ctx, &tasks.ListPidsRequest{ContainerID: id})
	if err != nil {
		return nil, fmt.Errorf("listing processes of %s: %w", id, errgrpc.ToNative(err))
	}
	pids := make([]uint32, 0, len(resp.GetProcesses()))
	for _, p := range resp.GetProcesses() {
		pids = append(pids, p.GetPid())
	}
	return pids, nil
}

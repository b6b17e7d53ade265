package server

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/stats"
)

// The stats RPCs and ListPodSandboxMetrics answer from two samplers
// (stats.Sampler) refreshed every config.StatsSamplePeriod: cgroup readings
// of running containers, pause tasks and pod cgroups, read in-process from
// the cgroup filesystem (containerd's task metrics only for what cannot be
// read so), and the network counters of ready pods. A container that starts
// and a pod that becomes ready are queued for a first reading in the
// background (Sampler.Warm, from the event hooks below), so that the stats
// calls after a burst of starts do not read the new cgroups themselves.
// Sampler keys:
const (
	keyContainer = "container/" // a running container's cgroup (stats.ContainerKey)
	keyPod       = "sandbox/"   // a ready pod's cgroup parent (stats.SandboxKey)
	keyPause     = "pause/"     // the pause task of a ready pod without a cgroup parent
)

// newSamplers makes the samplers; their loops run with the watchers.
func (s *Service) newSamplers() {
	period := s.config.StatsSamplePeriod.Duration
	s.cgroupSamples = stats.NewSampler(period, s.cgroupKeys, s.readCgroups,
		stats.WithOnRead(s.recordCPU))
	s.netSamples = stats.NewSampler(period, s.netKeys, s.readNetworks)
	s.watchers = append(s.watchers,
		func(ctx context.Context) { s.cgroupSamples.Run(s.nsCtx(ctx)) },
		func(ctx context.Context) { s.netSamples.Run(ctx) },
	)
}

// sampleContainerEvent keeps the samplers in step with a container's
// lifecycle (emitContainerEvent): a container that starts running has its
// first cgroup reading taken in the background at once (batched with the
// other starts), so that the first stats call after a burst of starts answers
// from the cache rather than reading every new cgroup in the call; a removed
// container's reading is dropped.
func (s *Service) sampleContainerEvent(c *container.Container, t runtimeapi.ContainerEventType) {
	if s.cgroupSamples == nil {
		return
	}
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
		s.cgroupSamples.Warm(keyContainer + c.ID)
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		s.cgroupSamples.Forget(keyContainer + c.ID)
	}
}

// samplePodEvent is sampleContainerEvent for pods (emitSandboxEvent): a pod
// that became ready has its cgroup (or pause task) and network counters read
// in the background at once; a removed pod's readings are dropped.
func (s *Service) samplePodEvent(sb *sandbox.Sandbox, t runtimeapi.ContainerEventType) {
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
		md := sb.GetMetadata()
		if s.cgroupSamples != nil {
			s.cgroupSamples.Warm(podCgroupKey(md))
		}
		if s.netSamples != nil && md.NetNSPath != "" && !md.NetworkTornDown {
			s.netSamples.Warm(md.ID)
		}
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		if s.cgroupSamples != nil {
			s.cgroupSamples.Forget(keyPod + sb.ID)
			s.cgroupSamples.Forget(keyPause + sb.ID)
		}
		if s.netSamples != nil {
			s.netSamples.Forget(sb.ID)
		}
	}
}

// cgroupKeys names what the cgroup sampler reads each period.
func (s *Service) cgroupKeys() []string {
	var keys []string
	for _, c := range s.containers.List() {
		if st := c.Status(); st.State() == runtimeapi.ContainerState_CONTAINER_RUNNING {
			keys = append(keys, keyContainer+c.ID)
		}
	}
	for _, sb := range s.sandboxes.List() {
		if state, _ := sb.State(); state != sandbox.StateReady {
			continue
		}
		keys = append(keys, podCgroupKey(sb.GetMetadata()))
	}
	return keys
}

// podCgroupKey is the key of a ready pod's own reading: its cgroup parent,
// or its pause task when it has none (its usage is then summed).
func podCgroupKey(md sandbox.Metadata) string {
	if md.Config.GetLinux().GetCgroupParent() == "" {
		return keyPause + md.ID
	}
	return keyPod + md.ID
}

// readCgroups reads the cgroups of keys in-process; what cannot be read so
// (a task not in the host's cgroup tree, e.g. a VM runtime, or another
// cgroup layout) is asked of containerd in one Metrics call.
func (s *Service) readCgroups(ctx context.Context, keys []string) map[string]*stats.Sample {
	out := make(map[string]*stats.Sample, len(keys))
	fallback := map[string]string{} // task ID -> key
	for _, k := range keys {
		kind, id := splitKey(k)
		switch kind {
		case keyContainer:
			c, err := s.containers.Get(id)
			if err != nil {
				continue
			}
			st := c.Status()
			if st.State() != runtimeapi.ContainerState_CONTAINER_RUNNING {
				continue
			}
			if sample, err := stats.ReadProcessCgroup(st.Pid, c.ID); err == nil {
				out[k] = sample
				continue
			} else {
				klog.V(5).InfoS("Container cgroup not readable in-process, asking containerd", "containerID", c.ID, "err", err)
			}
			fallback[c.ID] = k
		case keyPause:
			sb, err := s.sandboxes.Get(id)
			if err != nil {
				continue
			}
			state, pid := sb.State()
			if state != sandbox.StateReady {
				continue
			}
			if sample, err := stats.ReadProcessCgroup(pid, sb.ID); err == nil {
				out[k] = sample
				continue
			}
			fallback[sb.ID] = k
		case keyPod:
			sb, err := s.sandboxes.Get(id)
			if err != nil {
				continue
			}
			if sample := podCgroupSample(sb.GetMetadata()); sample != nil {
				out[k] = sample
			}
		}
	}
	if len(fallback) == 0 {
		return out
	}
	ids := make([]string, 0, len(fallback))
	for id := range fallback {
		ids = append(ids, id)
	}
	samples, err := s.taskSamples(ctx, ids)
	if err != nil {
		klog.V(2).InfoS("Task metrics not available", "tasks", len(ids), "err", err)
		return out
	}
	for id, sample := range samples {
		out[fallback[id]] = sample
	}
	return out
}

// recordCPU feeds every new cgroup reading to the CPU rate collector, so
// that UsageNanoCores is the rate between the sampler's own readings.
func (s *Service) recordCPU(key string, sample *stats.Sample) {
	kind, id := splitKey(key)
	var ck string
	switch kind {
	case keyContainer:
		ck = stats.ContainerKey(id)
	case keyPod:
		ck = stats.SandboxKey(id)
	default:
		return // pause tasks only count in a sum
	}
	if usage, ok := sample.UsageCoreNanoSeconds(); ok {
		s.stats.UsageNanoCores(ck, usage, sample.Timestamp)
	}
}

// netKeys names the ready pods with a network namespace of their own.
func (s *Service) netKeys() []string {
	var keys []string
	for _, sb := range s.sandboxes.List() {
		if state, _ := sb.State(); state == sandbox.StateReady {
			if md := sb.GetMetadata(); md.NetNSPath != "" && !md.NetworkTornDown {
				keys = append(keys, md.ID)
			}
		}
	}
	return keys
}

// readNetworks reads the interface counters of pods (keys are sandbox IDs).
func (s *Service) readNetworks(_ context.Context, ids []string) map[string][]stats.InterfaceStats {
	out := make(map[string][]stats.InterfaceStats, len(ids))
	for _, id := range ids {
		sb, err := s.sandboxes.Get(id)
		if err != nil {
			continue
		}
		_, pid := sb.State()
		if ifaces := podInterfaces(sb.GetMetadata(), pid); ifaces != nil {
			out[id] = ifaces
		}
	}
	return out
}

// samplesFor returns the cgroup readings of the running containers among
// ctrs (by container ID) and of the ready pods (by sandbox ID: the pod
// cgroup, or the pause task for pods without one), in one sampler call.
func (s *Service) samplesFor(ctx context.Context, ctrs []*container.Container, pods []sandbox.Metadata) (tasks, podSamples map[string]*stats.Sample) {
	keys := make([]string, 0, len(ctrs)+len(pods))
	for _, c := range ctrs {
		if c.Status().State() == runtimeapi.ContainerState_CONTAINER_RUNNING {
			keys = append(keys, keyContainer+c.ID)
		}
	}
	for _, md := range pods {
		keys = append(keys, podCgroupKey(md))
	}
	var got map[string]*stats.Sample
	if s.cgroupSamples != nil {
		got = s.cgroupSamples.Get(ctx, keys)
	} else {
		got = s.readCgroups(ctx, keys)
	}
	tasks = make(map[string]*stats.Sample, len(got))
	podSamples = map[string]*stats.Sample{}
	for k, sample := range got {
		switch kind, id := splitKey(k); kind {
		case keyContainer, keyPause:
			tasks[id] = sample
		case keyPod:
			podSamples[id] = sample
		}
	}
	return tasks, podSamples
}

// podNetwork returns the cached interface counters of a ready pod.
func (s *Service) podNetwork(ctx context.Context, md sandbox.Metadata, pid uint32) []stats.InterfaceStats {
	if s.netSamples == nil {
		return podInterfaces(md, pid)
	}
	return s.netSamples.Get(ctx, []string{md.ID})[md.ID]
}

func splitKey(k string) (kind, id string) {
	i := strings.IndexByte(k, '/')
	if i < 0 {
		return "", k
	}
	return k[:i+1], k[i+1:]
}

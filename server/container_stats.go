package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/errdefs/pkg/errgrpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/stats"
)

// ContainerStats returns the stats of one container. A container without a
// running task (created, exited) has attributes and a writable layer but no
// CPU or memory: kubelet asks for exited containers too, so that is not an error.
func (s *Service) ContainerStats(ctx context.Context, r *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err // NotFound / InvalidArgument, naming the ID
	}
	ctx = s.nsCtx(ctx)
	samples, _ := s.samplesFor(ctx, []*container.Container{c}, nil)
	fs := s.newFsLookup(ctx)
	return &runtimeapi.ContainerStatsResponse{Stats: s.containerStats(ctx, c, samples[c.ID], fs)}, nil
}

// ListContainerStats returns the stats of every container matching the
// filter, from the cgroup sampler's readings (stats_sampler.go).
func (s *Service) ListContainerStats(ctx context.Context, r *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	out, err := s.listContainerStats(s.nsCtx(ctx), r.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: out}, nil
}

func (s *Service) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	ctrs := s.containersForStats(f)
	samples, _ := s.samplesFor(ctx, ctrs, nil)
	fs := s.newFsLookup(ctx)
	out := make([]*runtimeapi.ContainerStats, 0, len(ctrs))
	for _, c := range ctrs {
		out = append(out, s.containerStats(ctx, c, samples[c.ID], fs))
	}
	return out, nil
}

// containersForStats applies a ContainerStatsFilter. IDs may be unique
// prefixes; an ID that matches nothing gives an empty list, not an error.
func (s *Service) containersForStats(f *runtimeapi.ContainerStatsFilter) []*container.Container {
	id, sandboxID := f.GetId(), f.GetPodSandboxId()
	if id != "" {
		c, err := s.containers.Get(id)
		if err != nil {
			return nil
		}
		id = c.ID
	}
	if sandboxID != "" {
		sb, err := s.sandboxes.Get(sandboxID)
		if err != nil {
			return nil
		}
		sandboxID = sb.ID
	}
	var out []*container.Container
	for _, c := range s.containers.List() {
		if (id != "" && c.ID != id) || (sandboxID != "" && c.SandboxID != sandboxID) ||
			!matchLabels(c.Config.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// containerStats builds one container's CRI stats from its task sample (nil
// when it has no running task).
func (s *Service) containerStats(ctx context.Context, c *container.Container, sample *stats.Sample, fs *fsLookup) *runtimeapi.ContainerStats {
	cs := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    c.Config.GetMetadata(),
			Labels:      c.Config.GetLabels(),
			Annotations: c.Config.GetAnnotations(),
		},
		Cpu:    sample.CPU(),
		Memory: sample.Memory(),
		Swap:   sample.Swap(),
		Io:     sample.IO(),
	}
	s.stats.FillNanoCores(stats.ContainerKey(c.ID), cs.Cpu)
	if u := fs.writableLayer(ctx, c); u != nil {
		cs.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp:  u.at.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: u.size},
			InodesUsed: &runtimeapi.UInt64Value{Value: u.inodes},
		}
	}
	return cs
}

// taskSamples fetches the task metrics of ids from containerd in one call and
// decodes them (the sampler's fallback for cgroups it cannot read itself). IDs without a task (not started, exited and deleted) are
// simply absent from the result.
func (s *Service) taskSamples(ctx context.Context, ids []string) (map[string]*stats.Sample, error) {
	out := make(map[string]*stats.Sample, len(ids))
	if len(ids) == 0 {
		return out, nil // no filter would mean "every task"
	}
	req := &tasks.MetricsRequest{Filters: make([]string, 0, len(ids))}
	for _, id := range ids {
		req.Filters = append(req.Filters, "id=="+id)
	}
	resp, err := s.deps.Containerd.TaskService().Metrics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("fetching task metrics from containerd: %w", errgrpc.ToNative(err))
	}
	for _, m := range resp.GetMetrics() {
		sample, err := stats.Decode(m)
		if err != nil {
			klog.V(2).InfoS("Skipping undecodable task metrics", "id", m.GetID(), "err", err)
			continue
		}
		out[m.GetID()] = sample
	}
	return out, nil
}

// layerUsage is the measured usage of a writable layer.
type layerUsage struct {
	mountpoint   string
	size, inodes uint64
	at           time.Time
}

// fsLookup resolves writable-layer usage for one stats request: the
// snapshotters' mountpoints are looked up once, snapshot sizes come from the
// image service's cache and only a miss asks the snapshotter.
type fsLookup struct {
	s      *Service
	mounts map[string]string // snapshotter -> root directory

	mu sync.Mutex
	fs map[string]fsInfo // mountpoint -> device and capacity
}

type fsInfo struct {
	device   string
	capacity *stats.FsCapacity // nil: unknown
}

// fsInfoWait bounds how long a stats call waits for the first snapshotter
// walk; later calls are served from the image service's cache.
const fsInfoWait = time.Second

func (s *Service) newFsLookup(ctx context.Context) *fsLookup {
	if s.images == nil {
		return nil // no image service (unit tests): usage unknown
	}
	l := &fsLookup{s: s, mounts: map[string]string{}, fs: map[string]fsInfo{}}
	fctx, cancel := context.WithTimeout(ctx, fsInfoWait)
	defer cancel()
	infos, err := s.images.FsInfoCached(fctx)
	if err != nil {
		klog.V(4).InfoS("Snapshotter filesystem info not available for stats", "err", err)
	}
	for _, fi := range infos {
		l.mounts[fi.Snapshotter] = fi.Mountpoint
	}
	return l
}

// containerSnapshotter is the snapshotter of a container: the one its pod's
// runtime handler uses (containers are created with it).
func (s *Service) containerSnapshotter(c *container.Container) string {
	sb, err := s.sandboxes.Get(c.SandboxID)
	if err != nil {
		return s.config.Snapshotter
	}
	_, rt, err := s.config.RuntimeFor(sb.GetMetadata().RuntimeHandler)
	if err != nil {
		return s.config.Snapshotter
	}
	return s.config.SnapshotterFor(rt)
}

// writableLayer returns the usage of the container's writable layer (its
// snapshot key is its ID). A nil lookup knows nothing (nil).
func (l *fsLookup) writableLayer(ctx context.Context, c *container.Container) *layerUsage {
	if l == nil {
		return nil
	}
	sn := l.s.containerSnapshotter(c)
	u := &layerUsage{mountpoint: l.mounts[sn], at: time.Now()}
	// From the image service's periodic walk only: a container made since
	// the last walk reports zero until the next one, as containerd's CRI
	// does. Asking containerd here (a walk of the layer per container) made
	// the first stats call after a burst of creates take hundreds of ms.
	u.size, u.inodes, _ = l.s.images.SnapshotUsage(sn, c.ID)
	return u
}

// filesystem returns the device and capacity of the filesystem at
// mountpoint (a snapshotter root), measured once per lookup.
func (l *fsLookup) filesystem(mountpoint string) (device string, capacity *stats.FsCapacity) {
	if l == nil || mountpoint == "" {
		return "", nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if fs, ok := l.fs[mountpoint]; ok {
		return fs.device, fs.capacity
	}
	fs := fsInfo{}
	if c, err := stats.Statfs(mountpoint); err == nil {
		fs.capacity = &c
	} else {
		klog.V(4).InfoS("Statfs of snapshotter root failed", "path", mountpoint, "err", err)
	}
	if dev, err := stats.MountSource(mountpoint); err == nil {
		fs.device = dev
	} else {
		klog.V(4).InfoS("Device of snapshotter root unknown", "path", mountpoint, "err", err)
	}
	l.fs[mountpoint] = fs
	return fs.device, fs.capacity
}

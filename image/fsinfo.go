package image

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"k8s.io/klog/v2"
)

// FsUsage is the usage of one snapshotter's filesystem.
type FsUsage struct {
	Snapshotter string
	// Mountpoint is the snapshotter's root directory (on containerd's host).
	Mountpoint string
	UsedBytes  uint64
	InodesUsed uint64
	// Timestamp (UnixNano) of the measurement.
	Timestamp int64
}

type snapshotUsage struct {
	kind         snapshots.Kind
	size, inodes uint64
}

// fsCache caches per-snapshot usage of one snapshotter. Committed snapshots
// never change, so their usage is measured once; active ones (container
// writable layers) are measured on every refresh.
type fsCache struct {
	name string

	mu        sync.Mutex
	root      string
	snaps     map[string]*snapshotUsage
	total     FsUsage
	refreshed time.Time // zero: never or invalidated

	// refreshing serializes refreshes; waiters share the running one.
	refreshing chan struct{}
}

func newFsCache(name string) *fsCache {
	return &fsCache{name: name, snaps: map[string]*snapshotUsage{}}
}

// FsInfo returns the usage of the default snapshotter first, then of the
// other configured ones. Values are cached for Options.StatsCollectPeriod: a
// stale value is returned at once while a refresh runs in the background;
// only the first call (or one after invalidation, e.g. a pull or removal)
// waits for the walk.
func (s *Service) FsInfo(ctx context.Context) ([]FsUsage, error) {
	return s.fsInfo(ctx, true)
}

// FsInfoCached is FsInfo for callers that can do with the last measurement
// even after an invalidation (the stats RPCs, which want the snapshotters'
// mount points): only the very first call waits for a walk.
func (s *Service) FsInfoCached(ctx context.Context) ([]FsUsage, error) {
	return s.fsInfo(ctx, false)
}

func (s *Service) fsInfo(ctx context.Context, waitInvalidated bool) ([]FsUsage, error) {
	var out []FsUsage
	for i, name := range s.snapshotters() {
		u, err := s.fsUsage(ctx, s.fsCacheFor(name), waitInvalidated)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			// A runtime handler's extra snapshotter must not hide the default one.
			klog.V(2).InfoS("Skipping snapshotter in filesystem usage", "snapshotter", name, "err", err)
			continue
		}
		out = append(out, u)
	}
	return out, nil
}

// SnapshotUsage returns the cached usage of snapshot key in snapshotter
// (e.g. a container's writable layer); ok is false when it is not known
// (yet). It never calls containerd.
func (s *Service) SnapshotUsage(snapshotter, key string) (size, inodes uint64, ok bool) {
	if snapshotter == "" {
		snapshotter = s.opts.Snapshotter
	}
	c := s.fsCacheFor(snapshotter)
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, found := c.snaps[key]; found {
		return u.size, u.inodes, true
	}
	return 0, 0, false
}

func (s *Service) snapshotters() []string {
	names := []string{s.opts.Snapshotter}
	seen := map[string]bool{s.opts.Snapshotter: true}
	for _, n := range s.opts.ExtraSnapshotters {
		if n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names
}

func (s *Service) fsCacheFor(name string) *fsCache {
	s.fsMu.Lock()
	defer s.fsMu.Unlock()
	c, ok := s.fs[name]
	if !ok {
		c = newFsCache(name)
		s.fs[name] = c
	}
	return c
}

// invalidateFsInfo makes the next FsInfo call measure again.
func (s *Service) invalidateFsInfo() {
	s.fsMu.Lock()
	caches := make([]*fsCache, 0, len(s.fs))
	for _, c := range s.fs {
		caches = append(caches, c)
	}
	s.fsMu.Unlock()
	for _, c := range caches {
		c.mu.Lock()
		c.refreshed = time.Time{}
		c.mu.Unlock()
	}
}

func (s *Service) fsUsage(ctx context.Context, c *fsCache, waitInvalidated bool) (FsUsage, error) {
	ttl := s.opts.StatsCollectPeriod
	if ttl <= 0 {
		ttl = 10 * time.Second
	}
	c.mu.Lock()
	fresh := !c.refreshed.IsZero() && time.Since(c.refreshed) < ttl
	haveValue := c.total.Timestamp != 0
	total := c.total
	running := c.refreshing
	if !fresh && running == nil {
		running = make(chan struct{})
		c.refreshing = running
		// Detached: a stale value is served while the walk runs, and the walk
		// must not die with the request that happened to start it.
		go s.refreshFs(context.WithoutCancel(ctx), c, running)
	}
	c.mu.Unlock()
	if fresh || (haveValue && (!waitInvalidated || !c.invalidated())) {
		return total, nil
	}
	select {
	case <-running:
	case <-ctx.Done():
		return FsUsage{}, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total.Timestamp == 0 {
		return FsUsage{}, fmt.Errorf("snapshotter %q filesystem usage is not available: %w", c.name, errdefs.ErrUnavailable)
	}
	return c.total, nil
}

// invalidated reports that the cached value was explicitly invalidated
// (rather than just aged), in which case callers wait for the new value.
func (c *fsCache) invalidated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refreshed.IsZero()
}

func (s *Service) refreshFs(ctx context.Context, c *fsCache, done chan struct{}) {
	defer func() {
		c.mu.Lock()
		c.refreshing = nil
		c.mu.Unlock()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := s.measureFs(ctx, c); err != nil {
		klog.ErrorS(err, "Failed to measure snapshotter filesystem usage", "snapshotter", c.name)
		return
	}
	klog.V(5).InfoS("Measured snapshotter usage", "snapshotter", c.name, "duration", time.Since(start))
}

func (s *Service) measureFs(ctx context.Context, c *fsCache) error {
	root, err := s.snapshotterRoot(ctx, c)
	if err != nil {
		return err
	}
	sn := s.client.SnapshotService(c.name)
	var infos []snapshots.Info
	// Usage is not called inside Walk: Walk holds the metadata read lock.
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		infos = append(infos, info)
		return nil
	}); err != nil {
		return fmt.Errorf("walking snapshots of %q: %w", c.name, err)
	}

	c.mu.Lock()
	known := make(map[string]snapshotUsage, len(c.snaps))
	for k, v := range c.snaps {
		known[k] = *v
	}
	c.mu.Unlock()

	updated := make(map[string]*snapshotUsage, len(infos))
	for _, info := range infos {
		if old, ok := known[info.Name]; ok && old.kind == info.Kind && info.Kind != snapshots.KindActive {
			updated[info.Name] = &old
			continue
		}
		u, err := sn.Usage(ctx, info.Name)
		if err != nil {
			if !errdefs.IsNotFound(err) {
				klog.V(2).InfoS("Failed to get snapshot usage", "snapshotter", c.name, "key", info.Name, "err", err)
			}
			continue
		}
		updated[info.Name] = &snapshotUsage{kind: info.Kind, size: uint64(u.Size), inodes: uint64(u.Inodes)}
	}
	var total FsUsage
	for _, u := range updated {
		total.UsedBytes += u.size
		total.InodesUsed += u.inodes
	}
	total.Snapshotter = c.name
	total.Mountpoint = root
	total.Timestamp = time.Now().UnixNano()

	c.mu.Lock()
	c.snaps = updated
	c.total = total
	c.refreshed = time.Now()
	c.mu.Unlock()
	return nil
}

// snapshotterRoot asks containerd where the snapshotter keeps its data.
func (s *Service) snapshotterRoot(ctx context.Context, c *fsCache) (string, error) {
	c.mu.Lock()
	root := c.root
	c.mu.Unlock()
	if root != "" {
		return root, nil
	}
	// One filter string: comma-separated conditions are ANDed (separate
	// strings would be ORed).
	resp, err := s.client.IntrospectionService().Plugins(ctx, fmt.Sprintf("type==io.containerd.snapshotter.v1,id==%s", c.name))
	if err != nil {
		return "", fmt.Errorf("introspecting snapshotter %q: %w", c.name, err)
	}
	for _, p := range resp.GetPlugins() {
		if p.GetID() != c.name {
			continue
		}
		if perr := p.GetInitErr(); perr != nil {
			return "", fmt.Errorf("snapshotter %q failed to initialise in containerd: %s: %w", c.name, perr.GetMessage(), errdefs.ErrFailedPrecondition)
		}
		root = p.GetExports()["root"]
	}
	if root == "" {
		return "", fmt.Errorf("containerd has no snapshotter %q exporting its root: %w", c.name, errdefs.ErrFailedPrecondition)
	}
	c.mu.Lock()
	c.root = root
	c.mu.Unlock()
	return root, nil
}

package nri

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"

	"github.com/cri-containerd/cri-containerd/config"
)

// fakeDomain is the daemon as NRI sees it.
type fakeDomain struct {
	mu      sync.Mutex
	pods    []*api.PodSandbox
	ctrs    []*api.Container
	updates []*api.ContainerUpdate
	evicted chan string
	failIDs map[string]bool
}

func newFakeDomain() *fakeDomain {
	return &fakeDomain{evicted: make(chan string, 8), failIDs: map[string]bool{}}
}

func (d *fakeDomain) ListPodSandboxes(context.Context) []*api.PodSandbox {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pods)
}

func (d *fakeDomain) ListContainers(context.Context) []*api.Container {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.ctrs)
}

func (d *fakeDomain) UpdateContainer(_ context.Context, u *api.ContainerUpdate) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failIDs[u.GetContainerId()] {
		return os.ErrNotExist
	}
	d.updates = append(d.updates, u)
	return nil
}

func (d *fakeDomain) EvictContainer(_ context.Context, e *api.ContainerEviction) error {
	d.evicted <- e.GetContainerId()
	return nil
}

// recorder is a test NRI plugin: it records the events it gets, adjusts
// the containers it is asked to create and evicts or updates on demand.
type recorder struct {
	mu     sync.Mutex
	events []string
	synced chan []string // container IDs of each Synchronize

	adjust  *api.ContainerAdjustment
	evict   string
	update  *api.ContainerUpdate
	syncHit chan struct{} // closed when Synchronize starts, if set
	syncRel chan struct{} // Synchronize waits for it, if set
}

func (r *recorder) record(ev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	if r.syncHit != nil {
		close(r.syncHit)
		<-r.syncRel
	}
	var ids []string
	for _, p := range pods {
		ids = append(ids, "pod:"+p.GetId())
	}
	for _, c := range ctrs {
		ids = append(ids, c.GetId()+":"+c.GetState().String())
	}
	r.synced <- ids
	return nil, nil
}

func (r *recorder) RunPodSandbox(_ context.Context, p *api.PodSandbox) error {
	r.record("RunPodSandbox " + p.GetId())
	return nil
}

func (r *recorder) StopPodSandbox(_ context.Context, p *api.PodSandbox) error {
	r.record("StopPodSandbox " + p.GetId())
	return nil
}

func (r *recorder) RemovePodSandbox(_ context.Context, p *api.PodSandbox) error {
	r.record("RemovePodSandbox " + p.GetId())
	return nil
}

func (r *recorder) UpdatePodSandbox(_ context.Context, p *api.PodSandbox, _, res *api.LinuxResources) error {
	r.record("UpdatePodSandbox " + p.GetId() + " " + res.GetCpu().GetCpus())
	return nil
}

func (r *recorder) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	r.record("CreateContainer " + c.GetId())
	var ups []*api.ContainerUpdate
	if r.update != nil {
		ups = append(ups, r.update)
	}
	return r.adjust, ups, nil
}

func (r *recorder) PostCreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.record("PostCreateContainer " + c.GetId())
	return nil
}

func (r *recorder) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.record("StartContainer " + c.GetId())
	return nil
}

func (r *recorder) PostStartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.record("PostStartContainer " + c.GetId())
	return nil
}

func (r *recorder) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, res *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	r.record("UpdateContainer " + c.GetId())
	u := &api.ContainerUpdate{ContainerId: c.GetId()}
	u.SetLinuxCPUSetCPUs("0")
	return []*api.ContainerUpdate{u}, nil
}

func (r *recorder) PostUpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.record("PostUpdateContainer " + c.GetId())
	return nil
}

func (r *recorder) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	r.record("StopContainer " + c.GetId())
	return nil, nil
}

func (r *recorder) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	r.record("RemoveContainer " + c.GetId())
	return nil
}

// startHost starts an NRI host on a private socket.
func startHost(t *testing.T, d Domain) (*NRI, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.DefaultNRI()
	cfg.SocketPath = filepath.Join(dir, "nri.sock")
	cfg.PluginPath = filepath.Join(dir, "plugins")
	cfg.PluginConfigPath = filepath.Join(dir, "conf.d")
	n, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n, cfg.SocketPath
}

// connect connects p as plugin idx-name and waits for its Synchronize.
func connect(t *testing.T, sock, name, idx string, p *recorder) []string {
	t.Helper()
	if p.synced == nil {
		p.synced = make(chan []string, 1)
	}
	s, err := stub.New(p, stub.WithSocketPath(sock), stub.WithPluginName(name), stub.WithPluginIdx(idx))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); s.Stop() })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case ids := <-p.synced:
		return ids
	case <-time.After(30 * time.Second):
		t.Fatal("plugin not synchronized")
	}
	return nil
}

// waitPluginReady waits until an event reaches the plugin: Synchronize is
// done before the host adds the plugin to its list.
func waitPluginReady(t *testing.T, n *NRI, p *recorder) {
	t.Helper()
	probe := &api.PodSandbox{Id: "probe"}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := n.RunPodSandbox(context.Background(), probe); err != nil {
			t.Fatal(err)
		}
		if slices.Contains(p.Events(), "RunPodSandbox probe") {
			if err := n.RemovePodSandbox(context.Background(), probe); err != nil {
				t.Fatal(err)
			}
			p.mu.Lock()
			p.events = nil
			p.mu.Unlock()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("plugin never got an event")
}

func TestDisabledAndNilAreNoOps(t *testing.T) {
	ctx := context.Background()
	cfg := config.DefaultNRI()
	cfg.Disable = true
	disabled, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*NRI{nil, disabled} {
		if n.Enabled() {
			t.Fatal("enabled")
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		pod, ctr := &api.PodSandbox{Id: "p"}, &api.Container{Id: "c"}
		if err := n.RunPodSandbox(ctx, pod); err != nil {
			t.Fatal(err)
		}
		adj, err := n.CreateContainer(ctx, pod, ctr)
		if adj != nil || err != nil {
			t.Fatalf("CreateContainer = %v, %v", adj, err)
		}
		if r, err := n.UpdateContainer(ctx, pod, ctr, nil); r != nil || err != nil {
			t.Fatalf("UpdateContainer = %v, %v", r, err)
		}
		if err := n.RemoveContainer(ctx, pod, ctr); err != nil {
			t.Fatal(err)
		}
		n.BlockSync().Unblock()
		n.Stop()
	}
	if _, err := os.Stat(cfg.SocketPath); err == nil && cfg.SocketPath == "/var/run/nri/nri.sock" {
		t.Log("a system NRI socket exists (not ours)")
	}
}

func TestEventsInOrderWithAdjustmentAndUpdates(t *testing.T) {
	ctx := context.Background()
	d := newFakeDomain()
	n, sock := startHost(t, d)
	p := &recorder{
		adjust: &api.ContainerAdjustment{},
		update: &api.ContainerUpdate{ContainerId: "other"},
	}
	p.adjust.AddEnv("NRI_ADDED", "yes")
	p.adjust.AddMount(&api.Mount{Destination: "/nri", Source: "/tmp", Type: "bind", Options: []string{"rbind", "ro"}})
	p.update.SetLinuxCPUShares(512)
	connect(t, sock, "recorder", "10", p)
	waitPluginReady(t, n, p)

	pod := &api.PodSandbox{Id: "pod1", Name: "p", Namespace: "ns", Uid: "u"}
	ctr := &api.Container{Id: "ctr1", PodSandboxId: "pod1", Name: "c", Args: []string{"sleep", "1"}, Env: []string{"A=1"}}
	if err := n.RunPodSandbox(ctx, pod); err != nil {
		t.Fatal(err)
	}
	adj, err := n.CreateContainer(ctx, pod, ctr)
	if err != nil {
		t.Fatal(err)
	}
	if len(adj.GetEnv()) != 1 || adj.GetEnv()[0].GetKey() != "NRI_ADDED" || len(adj.GetMounts()) != 1 {
		t.Fatalf("adjustment = %v", adj)
	}
	d.mu.Lock()
	if len(d.updates) != 1 || d.updates[0].GetContainerId() != "other" {
		t.Fatalf("updates of other containers = %v", d.updates)
	}
	d.mu.Unlock()
	for _, f := range []func() error{
		func() error { return n.PostCreateContainer(ctx, pod, ctr) },
		func() error { return n.StartContainer(ctx, pod, ctr) },
		func() error { return n.PostStartContainer(ctx, pod, ctr) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := n.UpdateContainer(ctx, pod, ctr, &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "0-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetCpu().GetCpus() != "0" {
		t.Fatalf("UpdateContainer resources = %v, want the plugin's cpus 0", res)
	}
	for _, f := range []func() error{
		func() error { return n.PostUpdateContainer(ctx, pod, ctr) },
		func() error { return n.StopContainer(ctx, pod, ctr) },
		func() error { return n.StopContainer(ctx, pod, ctr) }, // delivered once
		func() error { return n.RemoveContainer(ctx, pod, ctr) },
		func() error { return n.RemoveContainer(ctx, pod, ctr) }, // delivered once
		func() error {
			return n.UpdatePodSandbox(ctx, pod, nil, &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "1"}})
		},
		func() error { return n.StopPodSandbox(ctx, pod) },
		func() error { return n.StopPodSandbox(ctx, pod) }, // delivered once
		func() error { return n.RemovePodSandbox(ctx, pod) },
		func() error { return n.RemovePodSandbox(ctx, pod) }, // delivered once
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"RunPodSandbox pod1",
		"CreateContainer ctr1", "PostCreateContainer ctr1",
		"StartContainer ctr1", "PostStartContainer ctr1",
		"UpdateContainer ctr1", "PostUpdateContainer ctr1",
		"StopContainer ctr1", "RemoveContainer ctr1",
		"UpdatePodSandbox pod1 1",
		"StopPodSandbox pod1", "RemovePodSandbox pod1",
	}
	if got := p.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

func TestRemoveWithoutStopTellsStopFirst(t *testing.T) {
	ctx := context.Background()
	n, sock := startHost(t, newFakeDomain())
	p := &recorder{}
	connect(t, sock, "recorder", "10", p)
	waitPluginReady(t, n, p)
	pod := &api.PodSandbox{Id: "pod1"}
	ctr := &api.Container{Id: "c1", PodSandboxId: "pod1"}
	_ = n.RunPodSandbox(ctx, pod)
	if _, err := n.CreateContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	_ = n.RemoveContainer(ctx, pod, ctr)
	_ = n.RemovePodSandbox(ctx, pod)
	want := []string{"RunPodSandbox pod1", "CreateContainer c1", "StopContainer c1", "RemoveContainer c1", "StopPodSandbox pod1", "RemovePodSandbox pod1"}
	if got := p.Events(); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
}

func TestSynchronizeListsExistingObjectsAndSetsTheirState(t *testing.T) {
	ctx := context.Background()
	d := newFakeDomain()
	d.pods = []*api.PodSandbox{{Id: "pod1"}}
	d.ctrs = []*api.Container{
		{Id: "running", PodSandboxId: "pod1", State: api.ContainerState_CONTAINER_RUNNING},
		{Id: "exited", PodSandboxId: "pod1", State: api.ContainerState_CONTAINER_STOPPED},
	}
	n, sock := startHost(t, d)
	p := &recorder{}
	ids := connect(t, sock, "recorder", "10", p)
	want := []string{"pod:pod1", "running:CONTAINER_RUNNING", "exited:CONTAINER_STOPPED"}
	if !slices.Equal(ids, want) {
		t.Fatalf("synchronized %q, want %q", ids, want)
	}
	waitPluginReady(t, n, p)
	pod := d.pods[0]
	// The host learnt the states from the sync: the running container is
	// told stopped once, the exited one is not told again.
	_ = n.StopContainer(ctx, pod, d.ctrs[0])
	_ = n.StopContainer(ctx, pod, d.ctrs[1])
	_ = n.RemoveContainer(ctx, pod, d.ctrs[1])
	wantEv := []string{"StopContainer running", "RemoveContainer exited"}
	if got := p.Events(); !slices.Equal(got, wantEv) {
		t.Fatalf("events:\n got %q\nwant %q", got, wantEv)
	}
}

// A container made while a late plugin synchronises reaches it: the
// creation holds a SyncBlock from before its CreateContainer event until
// the container is listed, so the sync waits for it and lists it.
func TestSyncBlockKeepsContainersMadeDuringSynchronize(t *testing.T) {
	ctx := context.Background()
	d := newFakeDomain()
	n, sock := startHost(t, d)
	pod := &api.PodSandbox{Id: "pod1"}
	d.pods = []*api.PodSandbox{pod}

	// The creation starts first and holds its block while the plugin
	// connects.
	blk := n.BlockSync()
	p := &recorder{synced: make(chan []string, 1)}
	s, err := stub.New(p, stub.WithSocketPath(sock), stub.WithPluginName("late"), stub.WithPluginIdx("20"))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); s.Stop() }()
	started := make(chan error, 1)
	go func() { started <- s.Start(sctx) }()
	ctr := &api.Container{Id: "during", PodSandboxId: "pod1", State: api.ContainerState_CONTAINER_CREATED}
	if _, err := n.CreateContainer(ctx, pod, ctr); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.ctrs = append(d.ctrs, ctr)
	d.mu.Unlock()
	blk.Unblock()
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	var ids []string
	select {
	case ids = <-p.synced:
	case <-time.After(30 * time.Second):
		t.Fatal("no Synchronize")
	}
	if !slices.Contains(ids, "during:CONTAINER_CREATED") && !slices.Contains(p.Events(), "CreateContainer during") {
		t.Fatalf("the container made during the sync was lost: synced %q, events %q", ids, p.Events())
	}
}

func TestEvictionRunsAfterTheEvent(t *testing.T) {
	ctx := context.Background()
	d := newFakeDomain()
	n, sock := startHost(t, d)
	p := &recorder{}
	connect(t, sock, "recorder", "10", p)
	waitPluginReady(t, n, p)
	// An eviction asked for during an event goes through the domain,
	// which may call back into NRI (the stop of the evicted container).
	d2 := &reentrantDomain{fakeDomain: d, n: n}
	n.domain = d2
	n.evict(ctx, []*api.ContainerEviction{{ContainerId: "victim", Reason: "test"}})
	select {
	case id := <-d.evicted:
		if id != "victim" {
			t.Fatalf("evicted %q", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("eviction not done")
	}
}

// reentrantDomain stops the evicted container through NRI, as the daemon does.
type reentrantDomain struct {
	*fakeDomain
	n *NRI
}

func (d *reentrantDomain) EvictContainer(ctx context.Context, e *api.ContainerEviction) error {
	_ = d.n.StopContainer(ctx, &api.PodSandbox{Id: "pod"}, &api.Container{Id: e.GetContainerId()})
	return d.fakeDomain.EvictContainer(ctx, e)
}

func TestFailedUpdatesAreReturnedUnlessIgnored(t *testing.T) {
	d := newFakeDomain()
	d.failIDs["gone"] = true
	n := &NRI{domain: d, state: map[string]objState{}}
	failed, err := n.updateFromPlugin(context.Background(), []*api.ContainerUpdate{
		{ContainerId: "ok"},
		{ContainerId: "gone"},
		{ContainerId: "gone", IgnoreFailure: true},
	})
	if err == nil || len(failed) != 1 || failed[0].GetIgnoreFailure() {
		t.Fatalf("failed = %v, err = %v", failed, err)
	}
}

// A plugin whose Synchronize takes longer than the per-event request
// timeout (but less than the registration timeout) stays connected and gets
// the events after it. It was cut off when Synchronize ran out of the 2 s
// request timeout, and then missed every container made during and after
// its sync (critest's two NRI synchronization specs hold Synchronize 2 s).
func TestRegressionSlowSynchronizeDisconnectsPlugin(t *testing.T) {
	ctx := context.Background()
	d := newFakeDomain()
	dir := t.TempDir()
	cfg := config.DefaultNRI()
	cfg.SocketPath = filepath.Join(dir, "nri.sock")
	cfg.PluginPath = filepath.Join(dir, "plugins")
	cfg.PluginConfigPath = filepath.Join(dir, "conf.d")
	cfg.PluginRequestTimeout = config.Duration{Duration: 200 * time.Millisecond}
	cfg.PluginRegistrationTimeout = config.Duration{Duration: 10 * time.Second}
	n, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		// Later tests' hosts start with the defaults.
		adaptation.SetPluginRequestTimeout(adaptation.DefaultPluginRequestTimeout)
		adaptation.SetPluginRegistrationTimeout(adaptation.DefaultPluginRegistrationTimeout)
	})

	p := &recorder{syncHit: make(chan struct{}), syncRel: make(chan struct{})}
	go func() {
		<-p.syncHit
		// Well over the request timeout, well under the registration one.
		time.Sleep(time.Second)
		close(p.syncRel)
	}()
	connect(t, cfg.SocketPath, "slow-sync", "10", p)

	pod := &api.PodSandbox{Id: "pod1"}
	ctr := &api.Container{Id: "after", PodSandboxId: "pod1"}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Contains(p.Events(), "CreateContainer after") {
		if time.Now().After(deadline) {
			t.Fatalf("the plugin was disconnected by its slow Synchronize: events %q", p.Events())
		}
		if _, err := n.CreateContainer(ctx, pod, ctr); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// seenDomain records whether the host said a plugin was seen when it
// listed the containers for a synchronisation.
type seenDomain struct {
	*fakeDomain
	n             *NRI
	seenAtListing atomic.Bool
}

func (d *seenDomain) ListContainers(ctx context.Context) []*api.Container {
	d.seenAtListing.Store(d.n.PluginsSeen())
	return d.fakeDomain.ListContainers(ctx)
}

// TestPluginsSeenFromTheFirstSynchronize: no plugin seen before one
// connects (events may then carry objects without their spec); from the
// first synchronisation on, including its own listing, the host says so.
func TestPluginsSeenFromTheFirstSynchronize(t *testing.T) {
	d := &seenDomain{fakeDomain: newFakeDomain()}
	n, sock := startHost(t, d)
	d.n = n
	if n.PluginsSeen() {
		t.Fatal("PluginsSeen before any plugin connected")
	}
	p := &recorder{}
	connect(t, sock, "recorder", "10", p)
	waitPluginReady(t, n, p)
	if !d.seenAtListing.Load() {
		t.Error("the synchronisation listed containers before PluginsSeen was set")
	}
	if !n.PluginsSeen() {
		t.Error("PluginsSeen false after a plugin synchronised")
	}
	var disabled *NRI
	if disabled.PluginsSeen() {
		t.Error("PluginsSeen on a nil host")
	}
}

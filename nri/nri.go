// Package nri hosts NRI (Node Resource Interface) plugins with the runtime
// side of github.com/containerd/nri (pkg/adaptation): plugins connect to a
// socket, or are started from a plugin directory, and are told of every pod
// and container lifecycle event in order; they may adjust a container's OCI
// spec at creation, update containers' resources and evict containers.
//
// The daemon hands the package converted records (convert.go) and gets the
// adjustment back to apply to the spec (adjust.go). The daemon's own state
// is reached through Domain, which lists pods and containers for plugin
// synchronisation and applies the updates and evictions plugins ask for.
//
// A nil *NRI, or one made with config.NRI.Disable, is a no-op on every
// method, so callers need no checks.
package nri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/version"
)

// Domain is what the NRI host needs of the daemon.
type Domain interface {
	// ListPodSandboxes returns the pods that exist (ready or not).
	ListPodSandboxes(ctx context.Context) []*api.PodSandbox
	// ListContainers returns the containers that exist (any state).
	ListContainers(ctx context.Context) []*api.Container
	// UpdateContainer applies a plugin's resource update to a container.
	// It runs inside an NRI event: it must not call NRI.
	UpdateContainer(ctx context.Context, u *api.ContainerUpdate) error
	// EvictContainer stops a container a plugin asks to evict. It runs on
	// its own goroutine after the event that asked for it, so the stop may
	// tell NRI.
	EvictContainer(ctx context.Context, e *api.ContainerEviction) error
}

// objState is how far an object got, as the plugins were told: a stop or a
// removal is delivered once, and only for objects they know of.
type objState int

const (
	stateNone objState = iota
	stateCreated
	stateRunning
	stateStopped
)

// NRI is the NRI host of the daemon.
type NRI struct {
	cfg    config.NRI
	a      *adaptation.Adaptation
	domain Domain

	// gate keeps events out while Start runs: Start holds the adaptation's
	// lock while it synchronises pre-installed plugins, which takes mu, and
	// an event takes mu before the adaptation's lock.
	gate sync.RWMutex
	// mu serialises events, so that plugins see them in the order the
	// daemon made them, and synchronisation, so that a plugin's initial
	// view and the events after it agree. It guards state.
	mu    sync.Mutex
	state map[string]objState
	// synced is set when a plugin first synchronises (before it lists
	// the objects): PluginsSeen. The adaptation's Start synchronises its
	// pre-installed plugins (the first call), also when there are none:
	// that one counts only when preinstalled found files in PluginPath.
	synced       atomic.Bool
	syncs        atomic.Int64
	preinstalled bool
}

// New makes the NRI host; with cfg.Disable it returns a host whose methods
// do nothing.
func New(cfg config.NRI, d Domain) (*NRI, error) {
	n := &NRI{cfg: cfg, domain: d, state: map[string]objState{}}
	if cfg.Disable {
		klog.InfoS("NRI is disabled")
		return n, nil
	}
	if d == nil {
		return nil, errors.New("NRI: no domain")
	}
	setLogger()
	if cfg.PluginRegistrationTimeout.Duration > 0 {
		adaptation.SetPluginRegistrationTimeout(cfg.PluginRegistrationTimeout.Duration)
	}
	if cfg.PluginRequestTimeout.Duration > 0 {
		adaptation.SetPluginRequestTimeout(cfg.PluginRequestTimeout.Duration)
	}
	var opts []adaptation.Option
	if cfg.SocketPath != "" {
		opts = append(opts, adaptation.WithSocketPath(cfg.SocketPath))
	}
	if cfg.PluginPath != "" {
		opts = append(opts, adaptation.WithPluginPath(cfg.PluginPath))
	}
	if cfg.PluginConfigPath != "" {
		opts = append(opts, adaptation.WithPluginConfigPath(cfg.PluginConfigPath))
	}
	if cfg.DisableConnections {
		opts = append(opts, adaptation.WithDisabledExternalConnections())
	}
	a, err := adaptation.New(version.RuntimeName, version.Version, n.synchronize, n.updateFromPlugin, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the NRI host: %w", err)
	}
	n.a = a
	return n, nil
}

// Enabled reports whether NRI is on.
func (n *NRI) Enabled() bool { return n != nil && n.a != nil }

// PluginsSeen reports whether a plugin ever synchronised with this host.
// Until one does, no plugin reads the objects events carry, and the domain
// may leave their costly parts out (a container's OCI spec); a plugin that
// connects later gets complete objects from its synchronisation on.
func (n *NRI) PluginsSeen() bool { return n.Enabled() && n.synced.Load() }

// Start starts the pre-installed plugins (synchronising them with the pods
// and containers Domain lists: call it after recovery) and listens for
// external plugins.
func (n *NRI) Start() error {
	if !n.Enabled() {
		return nil
	}
	n.gate.Lock()
	defer n.gate.Unlock()
	if ents, err := os.ReadDir(n.cfg.PluginPath); err == nil && len(ents) > 0 {
		n.preinstalled = true
	}
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("starting the NRI host on %s: %w", n.cfg.SocketPath, err)
	}
	klog.InfoS("NRI host started", "socket", n.cfg.SocketPath, "pluginDir", n.cfg.PluginPath, "externalPlugins", !n.cfg.DisableConnections)
	return nil
}

// Stop disconnects the plugins and closes the socket.
func (n *NRI) Stop() {
	if !n.Enabled() {
		return
	}
	n.gate.Lock()
	defer n.gate.Unlock()
	n.a.Stop()
}

// SyncBlock holds off the synchronisation of a plugin that connects now
// until Unblock. An RPC that makes or removes an object takes one before it
// tells the plugins and releases it once the object is in (or out of) the
// daemon's store, so that a new plugin either is told of the object by an
// event or finds it in its initial list, never neither.
type SyncBlock struct{ b *adaptation.PluginSyncBlock }

// BlockSync takes a SyncBlock. Never take a second one in the same call
// chain: a plugin waiting to synchronise would deadlock them.
func (n *NRI) BlockSync() SyncBlock {
	if !n.Enabled() {
		return SyncBlock{}
	}
	return SyncBlock{b: n.a.BlockPluginSync()}
}

// Unblock releases the block; safe on a zero SyncBlock.
func (b SyncBlock) Unblock() {
	if b.b != nil {
		b.b.Unblock()
	}
}

// lock enters an event: it waits for Start and serialises with the other
// events and synchronisation.
func (n *NRI) lock() func() {
	n.gate.RLock()
	n.mu.Lock()
	return func() {
		n.mu.Unlock()
		n.gate.RUnlock()
	}
}

// RunPodSandbox tells the plugins a pod was made (before its containers).
// An error fails the RunPodSandbox request.
func (n *NRI) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	n.state[pod.GetId()] = stateRunning
	return n.a.RunPodSandbox(ctx, &adaptation.RunPodSandboxRequest{Pod: pod})
}

// UpdatePodSandbox tells the plugins of new pod-level resources.
func (n *NRI) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, overhead, resources *api.LinuxResources) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	_, err := n.a.UpdatePodSandbox(ctx, &adaptation.UpdatePodSandboxRequest{
		Pod: pod, OverheadLinuxResources: overhead, LinuxResources: resources,
	})
	return err
}

// PostUpdatePodSandbox tells the plugins the pod-level resources were set.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	return n.a.PostUpdatePodSandbox(ctx, &adaptation.PostUpdatePodSandboxRequest{Pod: pod})
}

// StopPodSandbox tells the plugins a pod stopped; once per pod.
func (n *NRI) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	if s := n.state[pod.GetId()]; s != stateRunning && s != stateCreated {
		return nil
	}
	n.state[pod.GetId()] = stateStopped
	return n.a.StopPodSandbox(ctx, &adaptation.StopPodSandboxRequest{Pod: pod})
}

// RemovePodSandbox tells the plugins a pod is gone; once per pod (a pod
// removed without a stop is told of the stop first).
func (n *NRI) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	s, ok := n.state[pod.GetId()]
	if !ok {
		return nil
	}
	delete(n.state, pod.GetId())
	if s != stateStopped {
		if err := n.a.StopPodSandbox(ctx, &adaptation.StopPodSandboxRequest{Pod: pod}); err != nil {
			klog.ErrorS(err, "NRI StopPodSandbox before removal failed", "podSandboxID", pod.GetId())
		}
	}
	return n.a.RemovePodSandbox(ctx, &adaptation.RemovePodSandboxRequest{Pod: pod})
}

// CreateContainer asks the plugins for their adjustment of a container
// about to be made (apply it with Adjust before the container exists). The
// updates and evictions of other containers they ask for are applied here;
// their failures are logged. An error fails the CreateContainer request;
// the caller then calls RemoveContainer to tell the plugins it is gone.
func (n *NRI) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) (*api.ContainerAdjustment, error) {
	if !n.Enabled() {
		return nil, nil
	}
	defer n.lock()()
	n.state[ctr.GetId()] = stateCreated
	rsp, err := n.a.CreateContainer(ctx, &adaptation.CreateContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return nil, err
	}
	n.evict(ctx, rsp.GetEvict())
	n.apply(ctx, rsp.GetUpdate())
	return rsp.GetAdjust(), nil
}

// PostCreateContainer tells the plugins a container was made.
func (n *NRI) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	return n.a.PostCreateContainer(ctx, &adaptation.PostCreateContainerRequest{Pod: pod, Container: ctr})
}

// StartContainer tells the plugins a container is about to start; an
// error fails the start.
func (n *NRI) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	n.state[ctr.GetId()] = stateRunning
	return n.a.StartContainer(ctx, &adaptation.StartContainerRequest{Pod: pod, Container: ctr})
}

// PostStartContainer tells the plugins a container started.
func (n *NRI) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	return n.a.PostStartContainer(ctx, &adaptation.PostStartContainerRequest{Pod: pod, Container: ctr})
}

// UpdateContainer asks the plugins about new resources for a container: it
// returns the resources to set instead of the requested ones (nil: keep the
// requested ones). Updates of other containers are applied here.
func (n *NRI) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, req *api.LinuxResources) (*api.LinuxResources, error) {
	if !n.Enabled() {
		return nil, nil
	}
	defer n.lock()()
	rsp, err := n.a.UpdateContainer(ctx, &adaptation.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: req})
	if err != nil {
		return nil, err
	}
	n.evict(ctx, rsp.GetEvict())
	var own *api.LinuxResources
	var others []*api.ContainerUpdate
	for _, u := range rsp.GetUpdate() {
		if u.GetContainerId() == ctr.GetId() {
			own = u.GetLinux().GetResources()
			continue
		}
		others = append(others, u)
	}
	n.apply(ctx, others)
	return own, nil
}

// PostUpdateContainer tells the plugins a container's resources were set.
func (n *NRI) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	return n.a.PostUpdateContainer(ctx, &adaptation.PostUpdateContainerRequest{Pod: pod, Container: ctr})
}

// StopContainer tells the plugins a container stopped (by StopContainer or
// on its own); once per container.
func (n *NRI) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	return n.stopContainer(ctx, pod, ctr)
}

func (n *NRI) stopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if s := n.state[ctr.GetId()]; s != stateCreated && s != stateRunning {
		return nil
	}
	n.state[ctr.GetId()] = stateStopped
	rsp, err := n.a.StopContainer(ctx, &adaptation.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return err
	}
	n.apply(ctx, rsp.GetUpdate())
	return nil
}

// RemoveContainer tells the plugins a container is gone (after a stop if
// they were not told of one); once per container.
func (n *NRI) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if !n.Enabled() {
		return nil
	}
	defer n.lock()()
	if _, ok := n.state[ctr.GetId()]; !ok {
		return nil
	}
	if err := n.stopContainer(ctx, pod, ctr); err != nil {
		klog.ErrorS(err, "NRI StopContainer before removal failed", "containerID", ctr.GetId())
	}
	delete(n.state, ctr.GetId())
	return n.a.RemoveContainer(ctx, &adaptation.RemoveContainerRequest{Pod: pod, Container: ctr})
}

// synchronize is the adaptation's SyncFn: it hands a plugin that connects
// (or every pre-installed plugin, at Start) the pods and containers that
// exist, and applies the updates it answers with.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.syncs.Add(1) > 1 || n.preinstalled {
		n.synced.Store(true)
	}
	pods := n.domain.ListPodSandboxes(ctx)
	ctrs := n.domain.ListContainers(ctx)
	for _, p := range pods {
		if _, ok := n.state[p.GetId()]; !ok {
			n.state[p.GetId()] = stateRunning
		}
	}
	for _, c := range ctrs {
		switch c.GetState() {
		case api.ContainerState_CONTAINER_CREATED:
			n.state[c.GetId()] = stateCreated
		case api.ContainerState_CONTAINER_RUNNING, api.ContainerState_CONTAINER_PAUSED:
			n.state[c.GetId()] = stateRunning
		default:
			n.state[c.GetId()] = stateStopped
		}
	}
	klog.InfoS("Synchronizing NRI plugins", "pods", len(pods), "containers", len(ctrs))
	restore := n.syncTimeout()
	updates, err := cb(ctx, pods, ctrs)
	restore()
	if err != nil {
		return err
	}
	n.apply(ctx, updates)
	return nil
}

// syncTimeout lets a plugin's Synchronize take up to the registration
// timeout instead of the request timeout, and returns the function that
// restores the latter. Synchronize is the last step of a plugin's
// registration (it is not in the plugin list before it returns) and hands
// it the whole node, so the short per-event bound is the wrong one: with it
// a plugin that takes over 2 s to digest the initial state was cut off and
// missed every event after it. The adaptation reads one process-wide
// request timeout when it sends each request; raising it here is safe
// because the caller holds mu, which every event takes, and plugins
// register one at a time, so the Synchronize is the only request in flight.
func (n *NRI) syncTimeout() func() {
	req, reg := n.cfg.PluginRequestTimeout.Duration, n.cfg.PluginRegistrationTimeout.Duration
	if req <= 0 {
		req = adaptation.DefaultPluginRequestTimeout
	}
	if reg <= 0 {
		reg = adaptation.DefaultPluginRegistrationTimeout
	}
	if reg <= req {
		return func() {}
	}
	adaptation.SetPluginRequestTimeout(reg)
	return func() { adaptation.SetPluginRequestTimeout(req) }
}

// updateFromPlugin is the adaptation's UpdateFn: a plugin's unsolicited
// updates. It does not take mu: a plugin may send them while it handles an
// event. It returns the updates that failed.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	failed := n.apply(ctx, updates)
	if len(failed) != 0 {
		return failed, fmt.Errorf("%d of %d container updates failed", len(failed), len(updates))
	}
	return nil, nil
}

// apply applies container updates through Domain and returns those that
// failed and must not be ignored.
func (n *NRI) apply(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		if err := n.domain.UpdateContainer(ctx, u); err != nil {
			klog.ErrorS(err, "NRI container update failed", "containerID", u.GetContainerId(), "ignoreFailure", u.GetIgnoreFailure())
			if !u.GetIgnoreFailure() {
				failed = append(failed, u)
			}
		}
	}
	return failed
}

// evict stops the containers plugins ask to evict, on another goroutine
// (the stops tell NRI, and the caller holds mu); failures are logged.
func (n *NRI) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	if len(evictions) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		for _, e := range evictions {
			if err := n.domain.EvictContainer(ctx, e); err != nil {
				klog.ErrorS(err, "NRI container eviction failed", "containerID", e.GetContainerId(), "reason", e.GetReason())
			}
		}
	}()
}

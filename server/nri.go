package server

import (
	"context"
	"encoding/json"
	"fmt"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/nri"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// nriHost ties the NRI host (package nri) to the service: it converts our
// records for it, is its Domain (listing, updates, evictions) and is the
// sandbox and container controllers' Hooks. A nil *nriHost (unit tests,
// --disable-nri) does nothing.
type nriHost struct {
	s *Service
	n *nri.NRI
}

// newNRIHost makes the NRI host of s (not started); nil when disabled.
func newNRIHost(s *Service) (*nriHost, error) {
	if s.config.NRI.Disable {
		klog.InfoS("NRI is disabled")
		return nil, nil
	}
	h := &nriHost{s: s}
	n, err := nri.New(s.config.NRI, h)
	if err != nil {
		return nil, err
	}
	h.n = n
	return h, nil
}

func (h *nriHost) enabled() bool { return h != nil && h.n.Enabled() }

// start synchronises the pre-installed plugins with the recovered pods and
// containers and listens for external plugins.
func (h *nriHost) start() error {
	if !h.enabled() {
		return nil
	}
	return h.n.Start()
}

func (h *nriHost) stop() {
	if h.enabled() {
		h.n.Stop()
	}
}

// blockSync holds off a plugin's synchronisation while an RPC makes or
// removes objects (see nri.SyncBlock); take it only in RPC handlers.
func (h *nriHost) blockSync() nri.SyncBlock {
	if !h.enabled() {
		return nri.SyncBlock{}
	}
	return h.n.BlockSync()
}

// pod is what NRI is told of a sandbox.
func (h *nriHost) pod(sb *sandbox.Sandbox) *api.PodSandbox {
	_, pid := sb.State()
	return nri.Pod(sb.GetMetadata(), pid, nil)
}

// podOf is what NRI is told of a container's sandbox (its ID alone once
// the sandbox is gone).
func (h *nriHost) podOf(c *container.Container) *api.PodSandbox {
	if sb, err := h.s.sandboxes.Get(c.SandboxID); err == nil {
		return h.pod(sb)
	}
	return &api.PodSandbox{Id: c.SandboxID}
}

// spec is a container's OCI spec as made (after NRI's adjustment), which the
// events tell plugins about: decoded from the containerd record the client
// holds when it has the spec (a container listed at start-up), or read from
// containerd (a container this process made: backend.SlimCreates, or one an
// update changed); nil when unknown, and nil until a plugin first connects
// (no one reads it then: NRI.PluginsSeen). It is not kept: with hundreds of
// containers the decoded specs were a tenth of the daemon's heap.
func (h *nriHost) spec(ctx context.Context, c *container.Container) *oci.Spec {
	if c.Container == nil || !h.n.PluginsSeen() {
		return nil
	}
	if !c.Status().SpecUpdated {
		if rec, err := c.Container.Info(ctx, containerd.WithoutRefreshedMetadata); err == nil && rec.Spec != nil {
			var spec oci.Spec
			if err := json.Unmarshal(rec.Spec.GetValue(), &spec); err == nil {
				return &spec
			}
		}
	}
	spec, err := c.Container.Spec(h.s.nsCtx(ctx))
	if err != nil {
		klog.V(2).InfoS("NRI: container spec not loaded", "containerID", c.ID, "err", err)
		return nil
	}
	return spec
}

func (h *nriHost) ctr(ctx context.Context, c *container.Container) *api.Container {
	return nri.Container(c.Metadata, c.Status(), h.spec(ctx, c))
}

// ListPodSandboxes (nri.Domain) lists the pods in the store.
func (h *nriHost) ListPodSandboxes(context.Context) []*api.PodSandbox {
	var out []*api.PodSandbox
	for _, sb := range h.s.sandboxes.List() {
		out = append(out, h.pod(sb))
	}
	return out
}

// ListContainers (nri.Domain) lists the containers in the store.
func (h *nriHost) ListContainers(ctx context.Context) []*api.Container {
	var out []*api.Container
	for _, c := range h.s.containers.List() {
		out = append(out, h.ctr(ctx, c))
	}
	return out
}

// UpdateContainer (nri.Domain) applies a plugin's resource update, over
// the container's current resources, without telling NRI of it.
func (h *nriHost) UpdateContainer(ctx context.Context, u *api.ContainerUpdate) error {
	c, err := h.s.containers.Get(u.GetContainerId())
	if err != nil {
		return err
	}
	cur := c.Status().Resources.GetLinux()
	if cur == nil {
		cur = c.Config.GetLinux().GetResources()
	}
	return h.s.ctrs().UpdateResources(h.s.nsCtx(ctx), c, nri.CRIResources(u.GetLinux().GetResources(), cur))
}

// EvictContainer (nri.Domain) stops a container a plugin evicts.
func (h *nriHost) EvictContainer(ctx context.Context, e *api.ContainerEviction) error {
	c, err := h.s.containers.Get(e.GetContainerId())
	if err != nil {
		return err
	}
	klog.InfoS("NRI plugin evicts container", "containerID", c.ID, "reason", e.GetReason())
	return h.s.ctrs().Stop(h.s.nsCtx(ctx), c, 0)
}

// nriSandboxHooks are the sandbox controller's Hooks.
type nriSandboxHooks struct{ h *nriHost }

// Run tells the plugins of a pod before it is in the store.
func (k nriSandboxHooks) Run(ctx context.Context, sb *sandbox.Sandbox) error {
	if !k.h.enabled() {
		return nil
	}
	return k.h.n.RunPodSandbox(ctx, k.h.pod(sb))
}

// RunFailed tells the plugins the pod is gone.
func (k nriSandboxHooks) RunFailed(ctx context.Context, sb *sandbox.Sandbox) {
	if !k.h.enabled() {
		return
	}
	if err := k.h.n.RemovePodSandbox(context.WithoutCancel(ctx), k.h.pod(sb)); err != nil {
		klog.ErrorS(err, "NRI RemovePodSandbox after a failed RunPodSandbox", "podSandboxID", sb.ID)
	}
}

// nriContainerHooks are the container controller's Hooks.
type nriContainerHooks struct{ h *nriHost }

// Create asks the plugins for their adjustment of a container's spec and
// applies it.
func (k nriContainerHooks) Create(ctx context.Context, md container.Metadata, spec *oci.Spec) error {
	if !k.h.enabled() {
		return nil
	}
	pod := &api.PodSandbox{Id: md.SandboxID}
	if sb, err := k.h.s.sandboxes.Get(md.SandboxID); err == nil {
		pod = k.h.pod(sb)
	}
	adj, err := k.h.n.CreateContainer(ctx, pod, nri.Container(md, container.Status{}, spec))
	if err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	if err := nri.Adjust(spec, adj, k.h.s.specGen.InjectCDIDevices); err != nil {
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	return nil
}

// CreateFailed tells the plugins the container is gone.
func (k nriContainerHooks) CreateFailed(ctx context.Context, md container.Metadata) {
	if !k.h.enabled() {
		return
	}
	pod := &api.PodSandbox{Id: md.SandboxID}
	if sb, err := k.h.s.sandboxes.Get(md.SandboxID); err == nil {
		pod = k.h.pod(sb)
	}
	if err := k.h.n.RemoveContainer(context.WithoutCancel(ctx), pod, nri.Container(md, container.Status{}, nil)); err != nil {
		klog.ErrorS(err, "NRI RemoveContainer after a failed CreateContainer", "containerID", md.ID)
	}
}

// Start tells the plugins a container is about to start.
func (k nriContainerHooks) Start(ctx context.Context, c *container.Container) error {
	if !k.h.enabled() {
		return nil
	}
	if err := k.h.n.StartContainer(ctx, k.h.podOf(c), k.h.ctr(ctx, c)); err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	return nil
}

// containerEvent tells the plugins of a container's lifecycle change
// (emitContainerEvent): PostCreate, PostStart, Stop (on its own goroutine:
// an exit handler must not wait for plugins) and Remove.
func (h *nriHost) containerEvent(c *container.Container, t runtimeapi.ContainerEventType) {
	if !h.enabled() {
		return
	}
	ctx := context.Background()
	var err error
	switch t {
	case runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT:
		err = h.n.PostCreateContainer(ctx, h.podOf(c), h.ctr(ctx, c))
	case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
		err = h.n.PostStartContainer(ctx, h.podOf(c), h.ctr(ctx, c))
	case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
		if !h.s.bg.Go(func(ctx context.Context) {
			if err := h.n.StopContainer(context.WithoutCancel(ctx), h.podOf(c), h.ctr(ctx, c)); err != nil {
				klog.ErrorS(err, "NRI StopContainer", "containerID", c.ID)
			}
		}) {
			klog.V(2).InfoS("NRI StopContainer not delivered: shutting down", "containerID", c.ID)
		}
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		err = h.n.RemoveContainer(ctx, h.podOf(c), h.ctr(ctx, c))
	}
	if err != nil {
		klog.ErrorS(err, "NRI container event", "containerID", c.ID, "event", t)
	}
}

// stopPod tells the plugins a pod stopped (its containers first, in case
// their own stop events are still on their way). Errors are logged: the
// pod is stopped whatever the plugins say.
func (h *nriHost) stopPod(ctx context.Context, sb *sandbox.Sandbox) {
	if !h.enabled() {
		return
	}
	pod := h.pod(sb)
	for _, c := range h.s.containers.ListBySandbox(sb.ID) {
		if err := h.n.StopContainer(ctx, pod, h.ctr(ctx, c)); err != nil {
			klog.ErrorS(err, "NRI StopContainer", "containerID", c.ID)
		}
	}
	if err := h.n.StopPodSandbox(ctx, pod); err != nil {
		klog.ErrorS(err, "NRI StopPodSandbox", "podSandboxID", sb.ID)
	}
}

// removePod tells the plugins a pod is gone.
func (h *nriHost) removePod(ctx context.Context, sb *sandbox.Sandbox) {
	if !h.enabled() {
		return
	}
	if err := h.n.RemovePodSandbox(ctx, h.pod(sb)); err != nil {
		klog.ErrorS(err, "NRI RemovePodSandbox", "podSandboxID", sb.ID)
	}
}

// updateContainer asks the plugins about new resources for a container
// and returns those to set.
func (h *nriHost) updateContainer(ctx context.Context, c *container.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	if !h.enabled() {
		return r, nil
	}
	got, err := h.n.UpdateContainer(ctx, h.podOf(c), h.ctr(ctx, c), nri.Resources(r))
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	if got == nil {
		return r, nil
	}
	return nri.CRIResources(got, r), nil
}

// postUpdateContainer tells the plugins a container's resources were set.
func (h *nriHost) postUpdateContainer(ctx context.Context, c *container.Container) {
	if !h.enabled() {
		return
	}
	if err := h.n.PostUpdateContainer(ctx, h.podOf(c), h.ctr(ctx, c)); err != nil {
		klog.ErrorS(err, "NRI PostUpdateContainer", "containerID", c.ID)
	}
}

// updatePod tells the plugins of a pod's new resources; an error fails the
// update before it is recorded.
func (h *nriHost) updatePod(ctx context.Context, sb *sandbox.Sandbox, resources, overhead *runtimeapi.LinuxContainerResources) error {
	if !h.enabled() {
		return nil
	}
	if err := h.n.UpdatePodSandbox(ctx, h.pod(sb), nri.Resources(overhead), nri.Resources(resources)); err != nil {
		return fmt.Errorf("NRI UpdatePodSandbox: %w", err)
	}
	return nil
}

// postUpdatePod tells the plugins a pod's new resources were recorded.
func (h *nriHost) postUpdatePod(ctx context.Context, sb *sandbox.Sandbox) {
	if !h.enabled() {
		return
	}
	if err := h.n.PostUpdatePodSandbox(ctx, h.pod(sb)); err != nil {
		klog.ErrorS(err, "NRI PostUpdatePodSandbox", "podSandboxID", sb.ID)
	}
}

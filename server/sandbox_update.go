package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// UpdatePodSandboxResources records the pod's new resources and overhead
// in its metadata (persisted in containerd, so they survive a restart) and
// reports them in PodSandboxStatus's verbose info. With the cgroupfs driver
// the pod cgroup is owned by kubelet, which has already resized it;
// containers are updated by their own UpdateContainerResources. A record
// that cannot be written leaves the previous resources in place.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, r *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	s.podResourcesMu.Lock()
	defer s.podResourcesMu.Unlock()
	if err := s.nri.updatePod(ctx, sb, r.GetResources(), r.GetOverhead()); err != nil {
		return nil, err
	}
	prev := sb.GetMetadata()
	md := sb.UpdateMetadata(func(m *sandbox.Metadata) {
		if r.GetResources() != nil {
			m.Resources = proto.Clone(r.GetResources()).(*runtimeapi.LinuxContainerResources)
		}
		if r.GetOverhead() != nil {
			m.Overhead = proto.Clone(r.GetOverhead()).(*runtimeapi.LinuxContainerResources)
		}
	})
	if sb.Container != nil {
		if err := sb.Container.Update(s.nsCtx(ctx), backend.UpdateExtension(sandbox.MetadataExtension, &md)); err != nil {
			sb.UpdateMetadata(func(m *sandbox.Metadata) { m.Resources, m.Overhead = prev.Resources, prev.Overhead })
			if errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("pod sandbox %s is being removed: %w", sb.ID, errdefs.ErrNotFound)
			}
			return nil, fmt.Errorf("recording resources of pod sandbox %s: %w", sb.ID, err)
		}
	}
	s.nri.postUpdatePod(ctx, sb)
	klog.V(2).InfoS("Pod sandbox resources updated", "podSandboxID", sb.ID, "resources", r.GetResources(), "overhead", r.GetOverhead())
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// podResources are the pod's current resources and overhead: the last
// update, else the config's.
func podResources(md sandbox.Metadata) (resources, overhead *runtimeapi.LinuxContainerResources) {
	resources, overhead = md.Resources, md.Overhead
	if resources == nil {
		resources = md.Config.GetLinux().GetResources()
	}
	if overhead == nil {
		overhead = md.Config.GetLinux().GetOverhead()
	}
	return resources, overhead
}

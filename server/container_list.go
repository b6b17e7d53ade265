package server

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/listwire"
)

// ListContainers lists containers matching the filter (id prefix, state, sandbox id prefix, labels).
func (s *Service) ListContainers(ctx context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	var out []*runtimeapi.Container
	for _, c := range s.containers.List() {
		if key, ok := s.listedContainer(c, r.GetFilter()); ok {
			out = append(out, s.containerListItem(c, key))
		}
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// listContainersWire is ListContainers as the gRPC server answers it
// (wireServer): each entry is the container's encoding kept from the last
// list (listwire), made again only when its state or image names changed.
func (s *Service) listContainersWire(r *runtimeapi.ListContainersRequest) *runtimeapi.ListContainersResponse {
	ctrs := s.containers.List()
	entries := make([][]byte, 0, len(ctrs))
	for _, c := range ctrs {
		key, ok := s.listedContainer(c, r.GetFilter())
		if !ok {
			continue
		}
		b, err := c.ListWire.Entry(key, containersField, func() proto.Message { return s.containerListItem(c, key) })
		if err != nil {
			klog.ErrorS(err, "Encoding a container's list entry", "containerID", c.ID)
			continue
		}
		entries = append(entries, b)
	}
	resp := &runtimeapi.ListContainersResponse{}
	listwire.Response(resp, entries)
	return resp
}

// containersField is the number of ListContainersResponse.containers.
var containersField = (&runtimeapi.ListContainersResponse{}).ProtoReflect().Descriptor().Fields().ByName("containers").Number()

// listedContainer reports whether c passes the filter, and the changing
// part of its list entry.
func (s *Service) listedContainer(c *container.Container, f *runtimeapi.ContainerFilter) (container.ListKey, bool) {
	st := c.Status().State()
	if f != nil {
		if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) ||
			f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) ||
			f.GetState() != nil && st != f.GetState().GetState() ||
			!matchLabels(c.Config.GetLabels(), f.GetLabelSelector()) {
			return container.ListKey{}, false
		}
	}
	image, imageRef := s.containerImage(c)
	return container.ListKey{State: st, Image: image, ImageRef: imageRef}, true
}

// containerListItem is the container's ListContainers entry (what
// ContainerStatus reports, without building the whole status: kubelet lists
// every container of the node every second).
func (s *Service) containerListItem(c *container.Container, key container.ListKey) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     c.Config.GetMetadata(),
		Image:        containerImageSpec(c, key.Image),
		ImageRef:     key.ImageRef,
		ImageId:      c.ImageRef,
		State:        key.State,
		CreatedAt:    c.Status().CreatedAt,
		Labels:       c.Config.GetLabels(),
		Annotations:  c.Config.GetAnnotations(),
	}
}

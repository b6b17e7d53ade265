package server

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
)

// ListContainers lists containers matching the filter (id prefix, state, sandbox id prefix, labels).
func (s *Service) ListContainers(ctx context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	var out []*runtimeapi.Container
	for _, c := range s.containers.List() {
		item := s.containerListItem(c)
		if matchContainer(item, r.GetFilter()) {
			out = append(out, item)
		}
	}
	return &runtimeapi.ListContainersResponse{Containers: out}, nil
}

// containerListItem is the container's ListContainers entry (what
// ContainerStatus reports, without building the whole status: kubelet lists
// every container of the node every second).
func (s *Service) containerListItem(c *container.Container) *runtimeapi.Container {
	image, imageRef := s.containerImage(c)
	st := c.Status()
	return &runtimeapi.Container{
		Id:           c.ID,
		PodSandboxId: c.SandboxID,
		Metadata:     c.Config.GetMetadata(),
		Image:        containerImageSpec(c, image),
		ImageRef:     imageRef,
		ImageId:      c.ImageRef,
		State:        st.State(),
		CreatedAt:    st.CreatedAt,
		Labels:       c.Config.GetLabels(),
		Annotations:  c.Config.GetAnnotations(),
	}
}

func matchContainer(c *runtimeapi.Container, f *runtimeapi.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(c.Id, f.GetId()) {
		return false
	}
	if f.GetPodSandboxId() != "" && !strings.HasPrefix(c.PodSandboxId, f.GetPodSandboxId()) {
		return false
	}
	if f.GetState() != nil && c.State != f.GetState().GetState() {
		return false
	}
	return matchLabels(c.Labels, f.GetLabelSelector())
}

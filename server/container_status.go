package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/container"
)

// ContainerStatus reports a container's state, exit, image, mounts, log path,
// user and resources.
func (s *Service) ContainerStatus(ctx context.Context, r *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("container %q: %w", r.GetContainerId(), err)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: s.containerStatus(c)}
	if r.GetVerbose() {
		info, err := s.containerInfo(s.nsCtx(ctx), c)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

func (s *Service) containerStatus(c *container.Container) *runtimeapi.ContainerStatus {
	st := c.Status()
	image, imageRef := s.containerImage(c)
	status := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    c.Config.GetMetadata(),
		State:       st.State(),
		CreatedAt:   st.CreatedAt,
		StartedAt:   st.StartedAt,
		FinishedAt:  st.FinishedAt,
		ExitCode:    st.ExitCode,
		Image:       containerImageSpec(c, image),
		ImageRef:    imageRef,
		ImageId:     c.ImageRef,
		Reason:      st.Reason,
		Message:     st.Message,
		Labels:      c.Config.GetLabels(),
		Annotations: c.Config.GetAnnotations(),
		Mounts:      c.Config.GetMounts(),
		LogPath:     c.LogPath,
		Resources:   st.Resources,
		User: &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{
			Uid: c.UID, Gid: c.GID, SupplementalGroups: c.SupplementalGroups,
		}},
	}
	return status
}

// containerImage is the image a container reports: the first tag of its
// image (the name it was created with when the image has none, or when it
// was created by ID) and the first repo digest (else the image ID).
func (s *Service) containerImage(c *container.Container) (image, imageRef string) {
	image, imageRef = c.ImageName, c.ImageRef
	if img, err := s.deps.Images.Get(c.ImageRef); err == nil {
		if len(img.RepoTags) > 0 {
			image = img.RepoTags[0]
		}
		if len(img.RepoDigests) > 0 {
			imageRef = img.RepoDigests[0]
		}
	}
	if strings.HasPrefix(c.ImageName, "sha256:") {
		image = c.ImageName
	}
	return image, imageRef
}

func containerImageSpec(c *container.Container, image string) *runtimeapi.ImageSpec {
	spec := c.Config.GetImage()
	return &runtimeapi.ImageSpec{Image: image, Annotations: spec.GetAnnotations(), UserSpecifiedImage: c.ImageName,
		RuntimeHandler: spec.GetRuntimeHandler()}
}

func (s *Service) containerInfo(ctx context.Context, c *container.Container) (map[string]string, error) {
	st := c.Status()
	info := map[string]any{
		"sandboxID": c.SandboxID,
		"pid":       st.Pid,
		"removing":  st.Removing,
		"config":    c.Config,
		"logPath":   c.LogPath,
		"image":     c.ImageRef,
	}
	// The record the containerd client listed at start-up, unless an
	// update changed it since or the client keeps it without its spec (a
	// container this process made: backend.SlimCreates): then one round
	// trip, which leaves the shared client object alone.
	ci, err := c.Container.Info(ctx, containerd.WithoutRefreshedMetadata)
	if st.SpecUpdated || err == nil && ci.Spec == nil {
		ci, err = s.client.ContainerService().Get(ctx, c.ID)
	}
	if err == nil {
		// The spec as containerd keeps it (the JSON of an oci.Spec): no
		// decoding into an oci.Spec to encode it again.
		if ci.Spec != nil && json.Valid(ci.Spec.GetValue()) {
			info["runtimeSpec"] = json.RawMessage(ci.Spec.GetValue())
		}
		info["snapshotKey"] = ci.SnapshotKey
		info["snapshotter"] = ci.Snapshotter
		info["runtimeType"] = ci.Runtime.Name
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("marshalling container info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}

func (s *Service) sandboxContainerStatuses(sandboxID string) []*runtimeapi.ContainerStatus {
	var out []*runtimeapi.ContainerStatus
	for _, c := range s.containers.ListBySandbox(sandboxID) {
		out = append(out, s.containerStatus(c))
	}
	return out
}

func (s *Service) emitContainerEvent(c *container.Container, t runtimeapi.ContainerEventType) {
	s.sampleContainerEvent(c, t)
	s.nri.containerEvent(c, t)
	if s.events == nil {
		return
	}
	e := &runtimeapi.ContainerEventResponse{
		ContainerId:        c.ID,
		ContainerEventType: t,
		CreatedAt:          time.Now().UnixNano(),
		ContainersStatuses: []*runtimeapi.ContainerStatus{s.containerStatus(c)},
	}
	if sb, err := s.sandboxes.Get(c.SandboxID); err == nil {
		e.PodSandboxStatus = sandboxStatus(sb)
		e.ContainersStatuses = s.sandboxContainerStatuses(sb.ID)
	}
	s.events.publish(e)
}

func cloneResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.ContainerResources {
	return container.CloneResources(r)
}

package server

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// ListPodSandbox lists sandboxes matching the filter (id or unique id prefix, state, labels).
func (s *Service) ListPodSandbox(ctx context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.sandboxes.List() {
		item := sandboxListItem(sb)
		if matchSandbox(item, r.GetFilter()) {
			out = append(out, item)
		}
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

func sandboxListItem(sb *sandbox.Sandbox) *runtimeapi.PodSandbox {
	md := sb.GetMetadata()
	st, _ := sb.State()
	return &runtimeapi.PodSandbox{
		Id:             md.ID,
		Metadata:       md.Config.GetMetadata(),
		State:          criSandboxState(st),
		CreatedAt:      md.CreatedAt,
		Labels:         md.Config.GetLabels(),
		Annotations:    md.Config.GetAnnotations(),
		RuntimeHandler: md.RuntimeHandler,
	}
}

func matchSandbox(sb *runtimeapi.PodSandbox, f *runtimeapi.PodSandboxFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(sb.Id, f.GetId()) {
		return false
	}
	if f.GetState() != nil && sb.State != f.GetState().GetState() {
		return false
	}
	return matchLabels(sb.Labels, f.GetLabelSelector())
}

// matchLabels reports whether labels contain every selector pair.
func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

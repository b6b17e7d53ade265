package server

import (
	"context"
	"strings"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/listwire"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// ListPodSandbox lists sandboxes matching the filter (id or unique id prefix, state, labels).
func (s *Service) ListPodSandbox(ctx context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.sandboxes.List() {
		if st, ok := listedSandbox(sb, r.GetFilter()); ok {
			out = append(out, sandboxListItem(sb, st))
		}
	}
	return &runtimeapi.ListPodSandboxResponse{Items: out}, nil
}

// listPodSandboxWire is ListPodSandbox as the gRPC server answers it
// (wireServer): each entry is the sandbox's encoding kept from the last
// list (listwire), made again when its state changed.
func (s *Service) listPodSandboxWire(r *runtimeapi.ListPodSandboxRequest) *runtimeapi.ListPodSandboxResponse {
	sbs := s.sandboxes.List()
	entries := make([][]byte, 0, len(sbs))
	for _, sb := range sbs {
		st, ok := listedSandbox(sb, r.GetFilter())
		if !ok {
			continue
		}
		b, err := sb.ListWire.Entry(st, sandboxesField, func() proto.Message { return sandboxListItem(sb, st) })
		if err != nil {
			klog.ErrorS(err, "Encoding a sandbox's list entry", "podSandboxID", sb.ID)
			continue
		}
		entries = append(entries, b)
	}
	resp := &runtimeapi.ListPodSandboxResponse{}
	listwire.Response(resp, entries)
	return resp
}

// sandboxesField is the number of ListPodSandboxResponse.items.
var sandboxesField = (&runtimeapi.ListPodSandboxResponse{}).ProtoReflect().Descriptor().Fields().ByName("items").Number()

// listedSandbox reports whether sb passes the filter, and its CRI state.
func listedSandbox(sb *sandbox.Sandbox, f *runtimeapi.PodSandboxFilter) (runtimeapi.PodSandboxState, bool) {
	st, _ := sb.State()
	cst := criSandboxState(st)
	if f != nil {
		if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) ||
			f.GetState() != nil && cst != f.GetState().GetState() ||
			!matchLabels(sb.Config.GetLabels(), f.GetLabelSelector()) {
			return cst, false
		}
	}
	return cst, true
}

func sandboxListItem(sb *sandbox.Sandbox, st runtimeapi.PodSandboxState) *runtimeapi.PodSandbox {
	md := sb.GetMetadata()
	return &runtimeapi.PodSandbox{
		Id:             md.ID,
		Metadata:       md.Config.GetMetadata(),
		State:          st,
		CreatedAt:      md.CreatedAt,
		Labels:         md.Config.GetLabels(),
		Annotations:    md.Config.GetAnnotations(),
		RuntimeHandler: md.RuntimeHandler,
	}
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

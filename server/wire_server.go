package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// wireServer is the Service as the gRPC server registers it: the list RPCs
// kubelet polls every second answer with their entries' kept encodings
// (listContainersWire, listPodSandboxWire) instead of messages that gRPC
// would encode again, entry by entry, on every call. In-process callers use
// the Service's own methods, which return ordinary messages.
type wireServer struct {
	*Service
}

func (w wireServer) ListContainers(_ context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return w.listContainersWire(r), nil
}

func (w wireServer) ListPodSandbox(_ context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return w.listPodSandboxWire(r), nil
}

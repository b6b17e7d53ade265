package server

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
	"github.com/cri-containerd/cri-containerd/streaming"
)

// PortForward checks that the sandbox is ready and returns the streaming URL
// that forwards ports into it (see streamRuntime.PortForward).
func (s *Service) PortForward(ctx context.Context, r *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("streaming server: %w", errdefs.ErrUnavailable)
	}
	sb, err := s.readySandbox(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	for _, p := range r.GetPort() {
		if err := validatePort(p); err != nil {
			return nil, err
		}
	}
	return s.stream.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: r.GetPort()})
}

// readySandbox finds a sandbox (NotFound) and checks that it is ready
// (FailedPrecondition).
func (s *Service) readySandbox(id string) (*sandbox.Sandbox, error) {
	sb, err := s.sandboxes.Get(id)
	if err != nil {
		return nil, err
	}
	if st, _ := sb.State(); st != sandbox.StateReady {
		return nil, fmt.Errorf("sandbox %s is not ready: %w", sb.ID, errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}

func validatePort(port int32) error {
	if port <= 0 || port > math.MaxUint16 {
		return fmt.Errorf("invalid port %d, must be 1-65535: %w", port, errdefs.ErrInvalidArgument)
	}
	return nil
}

// portForward connects to localhost:port inside the sandbox's network
// namespace (on the host for host-network pods) and copies data both ways
// until both directions are finished (see streaming.ForwardPort).
func (s *Service) portForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	if err := validatePort(port); err != nil {
		return err
	}
	sb, err := s.readySandbox(id)
	if err != nil {
		return err
	}
	md := sb.GetMetadata()
	netNSPath := ""
	if md.Config.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		if md.NetNSPath == "" {
			return fmt.Errorf("sandbox %s has no network namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
		}
		netNSPath = md.NetNSPath
	}
	return streaming.ForwardPort(ctx, sb.ID, netNSPath, port, stream)
}

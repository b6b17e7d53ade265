package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/version"
)

// kubeAPIVersion is the legacy "version" field of VersionResponse.
const kubeAPIVersion = "0.1.0"

// Version returns the runtime name, its version and the CRI API version.
func (s *Service) Version(ctx context.Context, r *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       version.RuntimeName,
		RuntimeVersion:    version.Version,
		RuntimeApiVersion: version.CRIVersion,
	}, nil
}

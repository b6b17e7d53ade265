package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// UpdateRuntimeConfig records the node's pod CIDR; CNI configs that use the
// ipRanges capability receive it on every pod setup.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, r *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	if err := validateCIDRs(cidr); err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w: %v", cidr, errdefs.ErrInvalidArgument, err)
	}
	s.netMu.Lock()
	changed := s.podCIDR != cidr
	s.podCIDR = cidr
	s.netMu.Unlock()
	if changed {
		klog.InfoS("Pod CIDR updated", "podCIDR", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// RuntimeConfig reports the cgroup driver kubelet must match.
func (s *Service) RuntimeConfig(ctx context.Context, r *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.config.CgroupDriver == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

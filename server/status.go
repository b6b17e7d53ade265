package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	reasonContainerdNotReady = "ContainerdNotReady"
	reasonNetworkNotReady    = "NetworkPluginNotReady"
)

// Status reports RuntimeReady (containerd health) and NetworkReady (a loaded CNI config).
func (s *Service) Status(ctx context.Context, r *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	ok, err := s.deps.Containerd.IsServing(hctx)
	cancel()
	if !ok || err != nil {
		runtimeCond.Status = false
		runtimeCond.Reason = reasonContainerdNotReady
		runtimeCond.Message = fmt.Sprintf("containerd at %s is not serving: %v", s.config.ContainerdEndpoint, err)
	}
	networkCond := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.networkStatus(); err != nil {
		networkCond.Status = false
		networkCond.Reason = reasonNetworkNotReady
		networkCond.Message = fmt.Sprintf("Network plugin returns error: %v", err)
	}
	resp := &runtimeapi.StatusResponse{
		Status:          &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeCond, networkCond}},
		RuntimeHandlers: s.runtimeHandlers(),
		Features: &runtimeapi.RuntimeFeatures{
			SupplementalGroupsPolicy: true,
		},
	}
	if r.GetVerbose() {
		info, err := s.verboseInfo()
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

// runtimeHandlers lists the configured handlers; the default one is also
// reported under the empty name, as kubelet expects.
func (s *Service) runtimeHandlers() []*runtimeapi.RuntimeHandler {
	var hs []*runtimeapi.RuntimeHandler
	for name := range s.config.Runtimes {
		f := s.handlerFeatures(name)
		hs = append(hs, &runtimeapi.RuntimeHandler{Name: name, Features: f})
		if name == s.config.DefaultRuntimeName {
			hs = append(hs, &runtimeapi.RuntimeHandler{Name: "", Features: f})
		}
	}
	return hs
}

func (s *Service) verboseInfo() (map[string]string, error) {
	info := map[string]string{}
	cfg, err := json.Marshal(s.config)
	if err != nil {
		return nil, fmt.Errorf("marshalling config: %w", err)
	}
	info["config"] = string(cfg)
	if s.deps.Network != nil {
		if c := s.deps.Network.Config(); c != nil {
			b, err := json.Marshal(c)
			if err == nil {
				info["cniconfig"] = string(b)
			}
		}
	}
	s.netMu.RLock()
	info["podCIDR"] = s.podCIDR
	s.netMu.RUnlock()
	info["selinux"] = selinuxStatus(s.selinuxEnabled)
	return info, nil
}

func (s *Service) networkStatus() error {
	if s.deps.Network == nil {
		return fmt.Errorf("cni plugin not initialized")
	}
	return s.deps.Network.Status()
}

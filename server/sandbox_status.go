package server

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

// PodSandboxStatus reports a sandbox's state, IPs, namespaces and metadata.
func (s *Service) PodSandboxStatus(ctx context.Context, r *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("sandbox %q: %w", r.GetPodSandboxId(), err)
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: sandboxStatus(sb)}
	if r.GetVerbose() {
		info, err := sandboxInfo(sb)
		if err != nil {
			return nil, err
		}
		resp.Info = info
	}
	return resp, nil
}

func criSandboxState(st sandbox.State) runtimeapi.PodSandboxState {
	if st == sandbox.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func sandboxStatus(sb *sandbox.Sandbox) *runtimeapi.PodSandboxStatus {
	md := sb.GetMetadata()
	st, _ := sb.State()
	cfg := md.Config
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	status := &runtimeapi.PodSandboxStatus{
		Id:        md.ID,
		Metadata:  cfg.GetMetadata(),
		State:     criSandboxState(st),
		CreatedAt: md.CreatedAt,
		Network:   &runtimeapi.PodSandboxNetworkStatus{},
		Linux: &runtimeapi.LinuxPodSandboxStatus{
			Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
				Network:       nsOpts.GetNetwork(),
				Pid:           nsOpts.GetPid(),
				Ipc:           nsOpts.GetIpc(),
				TargetId:      nsOpts.GetTargetId(),
				UsernsOptions: nsOpts.GetUsernsOptions(),
			}},
		},
		Labels:         cfg.GetLabels(),
		Annotations:    cfg.GetAnnotations(),
		RuntimeHandler: md.RuntimeHandler,
	}
	if st == sandbox.StateReady && nsOpts.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		status.Network.Ip = md.IP
		for _, ip := range md.AdditionalIPs {
			status.Network.AdditionalIps = append(status.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return status
}

// sandboxInfo is the verbose PodSandboxStatus info, as JSON under "info".
func sandboxInfo(sb *sandbox.Sandbox) (map[string]string, error) {
	md := sb.GetMetadata()
	st, pid := sb.State()
	var cniResult any
	if len(md.CNIResult) > 0 {
		_ = json.Unmarshal(md.CNIResult, &cniResult)
	}
	info := struct {
		Pid            uint32                       `json:"pid"`
		State          string                       `json:"state"`
		Phase          sandbox.Phase                `json:"phase"`
		NetNSPath      string                       `json:"netNamespacePath"`
		NetNSClosed    bool                         `json:"netNamespaceClosed"`
		RuntimeHandler string                       `json:"runtimeHandler"`
		RuntimeType    string                       `json:"runtimeType"`
		Image          string                       `json:"image"`
		Config         *runtimeapi.PodSandboxConfig `json:"config"`
		CNIResult      any                          `json:"cniResult,omitempty"`
		// Resources and Overhead: the last UpdatePodSandboxResources, else the config's.
		Resources *runtimeapi.LinuxContainerResources `json:"resources,omitempty"`
		Overhead  *runtimeapi.LinuxContainerResources `json:"overhead,omitempty"`
	}{
		Pid: pid, State: criSandboxState(st).String(), Phase: md.Phase, NetNSPath: md.NetNSPath,
		NetNSClosed: md.NetworkTornDown, RuntimeHandler: md.RuntimeHandler, RuntimeType: md.RuntimeType,
		Image: md.ImageID, Config: md.Config, CNIResult: cniResult,
	}
	info.Resources, info.Overhead = podResources(md)
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("marshalling sandbox info: %w", err)
	}
	return map[string]string{"info": string(b)}, nil
}

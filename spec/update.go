package spec

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateResources applies new CRI resources to an existing container spec,
// the way CreateContainer would have (UpdateContainerResources): it returns
// the updated spec and the resources to send to the running task. A nil r
// leaves the spec unchanged.
func (g *Generator) UpdateResources(s *runtimespec.Spec, r *runtimeapi.LinuxContainerResources, restrictOOM bool) (*runtimespec.Spec, error) {
	if r == nil {
		return s, nil
	}
	if err := g.withResources(r)(context.Background(), nil, &containers.Container{}, s); err != nil {
		return nil, err
	}
	if r.GetOomScoreAdj() != 0 {
		adj, err := g.clampOOMScoreAdj(int(r.GetOomScoreAdj()), restrictOOM)
		if err != nil {
			return nil, err
		}
		if s.Process != nil {
			s.Process.OOMScoreAdj = &adj
		}
	}
	return s, nil
}

package backend

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
)

// SlimCreates is the container store the daemon's containerd client uses
// (containerd.WithContainerStore): the record a Create returns, which the
// client's container object keeps for the container's life, is kept
// without its OCI spec and extensions. The daemon holds the container's
// metadata decoded, and the spec is read when needed (verbose status, NRI
// plugins), so each of hundreds of containers would otherwise pin a few KB
// (tens of KB with a seccomp profile) for nothing. Every other call, and
// the records Get and List return, are containerd's.
type SlimCreates struct {
	containers.Store
}

// Create creates the record and returns it without its spec and extensions.
func (s SlimCreates) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	r, err := s.Store.Create(ctx, c)
	r.Spec, r.Extensions = nil, nil
	return r, err
}

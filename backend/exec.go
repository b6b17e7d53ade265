package backend

import (
	"context"
	"syscall"

	containerd "github.com/containerd/containerd/v2/client"
)

// ExecProcess is what the exec driver (package containerexec) needs of a
// containerd exec process: containerd.Process implements it, tests use
// fakes.
type ExecProcess interface {
	ID() string
	Start(ctx context.Context) error
	Wait(ctx context.Context) (<-chan containerd.ExitStatus, error)
	Kill(ctx context.Context, sig syscall.Signal, opts ...containerd.KillOpts) error
	Resize(ctx context.Context, w, h uint32) error
	Delete(ctx context.Context, opts ...containerd.ProcessDeleteOpts) (*containerd.ExitStatus, error)
}

var _ ExecProcess = containerd.Process(nil)

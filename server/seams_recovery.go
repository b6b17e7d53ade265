package server

import (
	"context"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/events"
)

// containerdState is what recovery and the event monitor read from
// containerd: the containers of our namespace as listed (records with their
// labels, extensions and spec) and the task event stream. New sets it to the
// containerd client; unit tests use a fake (recover_test.go). Tasks are
// reached through the containers it lists.
type containerdState interface {
	Containers(ctx context.Context, filters ...string) ([]containerd.Container, error)
	Subscribe(ctx context.Context, filters ...string) (ch <-chan *events.Envelope, errs <-chan error)
}

var _ containerdState = (*containerd.Client)(nil)

package container

import (
	"context"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// Hooks are told of the steps of a container's creation and start that
// come before the step is done (the NRI host, package nri); the steps
// after are told through Options.OnEvent. The default is NopHooks.
type Hooks interface {
	// Create may adjust the OCI spec of a container about to be made
	// (md is its metadata so far); the containerd container does not
	// exist yet. An error fails CreateContainer, which undoes everything.
	Create(ctx context.Context, md Metadata, spec *oci.Spec) error
	// CreateFailed is told that a container Create was told of was undone.
	CreateFailed(ctx context.Context, md Metadata)
	// Start is told of a container about to start; an error fails
	// StartContainer.
	Start(ctx context.Context, c *Container) error
}

// NopHooks are Hooks that do nothing.
type NopHooks struct{}

// Create does nothing.
func (NopHooks) Create(context.Context, Metadata, *oci.Spec) error { return nil }

// CreateFailed does nothing.
func (NopHooks) CreateFailed(context.Context, Metadata) {}

// Start does nothing.
func (NopHooks) Start(context.Context, *Container) error { return nil }

// Hooks are the controller's Hooks (NopHooks when none); the owner's
// create and start steps that live outside the controller call them too.
func (c *Controller) Hooks() Hooks {
	if c.o.Hooks == nil {
		return NopHooks{}
	}
	return c.o.Hooks
}

// createHook returns the last spec option of a creation, which hands the
// finished spec to the hooks (they may adjust it), and undo, to be called
// when Create returns: a creation that failed after the hooks were told of
// it is told to them as undone.
func (c *Controller) createHook(cc *createCtx) (opt oci.SpecOpts, undo func(ctx context.Context, failed bool)) {
	told := false
	md := func() Metadata {
		return Metadata{Version: 1, ID: cc.id, Name: cc.name, SandboxID: cc.sb.ID, Config: cc.cfg,
			ImageRef: cc.img.ID, ImageName: cc.imageName, LogPath: logPath(cc.cfg, cc.sbCfg)}
	}
	opt = func(ctx context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		told = true
		return c.Hooks().Create(ctx, md(), s)
	}
	undo = func(ctx context.Context, failed bool) {
		if failed && told {
			c.Hooks().CreateFailed(ctx, md())
		}
	}
	return opt, undo
}

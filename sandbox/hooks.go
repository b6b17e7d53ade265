package sandbox

import "context"

// Hooks are told of the steps of a sandbox's creation that must happen
// before the sandbox is visible (the NRI host, package nri). The default
// is NopHooks.
type Hooks interface {
	// Run is told of a pod about to be started: its network is up, its
	// pause task not yet made and the sandbox not yet in the store. An
	// error fails RunPodSandbox, which then undoes everything.
	Run(ctx context.Context, sb *Sandbox) error
	// RunFailed is told that a pod Run was told of was undone.
	RunFailed(ctx context.Context, sb *Sandbox)
}

// NopHooks are Hooks that do nothing.
type NopHooks struct{}

// Run does nothing.
func (NopHooks) Run(context.Context, *Sandbox) error { return nil }

// RunFailed does nothing.
func (NopHooks) RunFailed(context.Context, *Sandbox) {}

// hooks are the controller's Hooks (NopHooks when none).
func (c *Controller) hooks() Hooks {
	if c.o.Hooks == nil {
		return NopHooks{}
	}
	return c.o.Hooks
}

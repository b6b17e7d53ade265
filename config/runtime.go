package config

import (
	"fmt"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/errdefs"
)

// RuntimeFor resolves a CRI runtime handler name (empty: the default
// runtime) to the handler's name and configuration. An unknown handler is
// errdefs.ErrInvalidArgument.
func (c Config) RuntimeFor(handler string) (string, Runtime, error) {
	if handler == "" {
		handler = c.DefaultRuntimeName
	}
	rt, ok := c.Runtimes[handler]
	if !ok {
		return "", Runtime{}, fmt.Errorf("no runtime for %q is configured: %w", handler, errdefs.ErrInvalidArgument)
	}
	return handler, rt, nil
}

// SnapshotterFor is the snapshotter of a runtime handler: its own, else the
// daemon's default.
func (c Config) SnapshotterFor(rt Runtime) string {
	if rt.Snapshotter != "" {
		return rt.Snapshotter
	}
	return c.Snapshotter
}

// RuncOptions are the runc shim options of a runtime handler.
func (c Config) RuncOptions(rt Runtime) *runcoptions.Options {
	return &runcoptions.Options{
		BinaryName:    rt.BinaryName,
		Root:          rt.Root,
		SystemdCgroup: c.SystemdCgroup(rt),
	}
}

// SystemdCgroup tells whether a runtime handler uses the systemd cgroup driver.
func (c Config) SystemdCgroup(rt Runtime) bool {
	return rt.SystemdCgroup || c.CgroupDriver == "systemd"
}

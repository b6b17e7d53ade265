package server

import (
	"path/filepath"

	"k8s.io/klog/v2"
)

// runcV2 is the runtime type of containerd's runc shim.
const runcV2 = "io.containerd.runc.v2"

// defaultRuncRoot is runc's state root under the containerd runc shim when
// the runtime sets none (the shim adds the namespace).
const defaultRuncRoot = "/run/containerd/runc"

// reapShims kills the shims that still serve id after its containerd
// container was deleted: containerd killed while the task was being
// created can come back without the task, leaving the shim and the
// container's processes running where nothing would ever stop them.
// handler is the runtime handler of the pod (for runc's state root).
func (s *Service) reapShims(id, handler string) {
	if s.shims == nil {
		return
	}
	var runcRoot string
	if _, rt, err := s.config.RuntimeFor(handler); err == nil && rt.Type == runcV2 {
		root := rt.Root
		if root == "" {
			root = defaultRuncRoot
		}
		runcRoot = filepath.Join(root, s.config.ContainerdNamespace)
	}
	n, err := s.shims.Reap(s.config.ContainerdNamespace, id, runcRoot)
	if err != nil {
		klog.ErrorS(err, "Killing shims containerd no longer knows", "id", id)
	}
	if n > 0 {
		s.metrics.reapedShims.Add(float64(n))
	}
}

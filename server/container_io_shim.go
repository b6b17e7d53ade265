package server

import (
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/shimlog"
)

// useShimLog says whether new tasks hand their output to the shim-side log
// writer (container_log_mode = "shim").
func (s *Service) useShimLog() bool {
	return s.config.ContainerLogMode == config.ContainerLogModeShim
}

// shimLogRemote returns the handle on c's shim-side log writer (package
// shimlog), whatever the log mode, so that a task started in "shim" mode is
// re-attached after a restart in "daemon" mode too. A container with stdin
// and a terminal uses it with a stdin FIFO; one with stdin and no terminal
// keeps the output FIFOs (containerio decides: the runc shim's binary IO
// gives the process no stdin without a terminal).
func (s *Service) shimLogRemote(c *container.Container) containerio.Remote {
	exe, err := os.Executable()
	if err != nil {
		klog.ErrorS(err, "Cannot find the daemon's executable for the shim log writer", "containerID", c.ID)
		exe = ""
	}
	// After an in-place upgrade the old file is gone; the new one is at the
	// same path.
	exe = strings.TrimSuffix(exe, " (deleted)")
	return shimlog.NewRemote(shimlog.RemoteConfig{
		ID:          c.ID,
		Dir:         filepath.Join(s.config.StateDir, "containers", c.ID),
		Executable:  exe,
		LogPath:     c.LogPath,
		MaxLineSize: s.config.MaxContainerLogLineSize,
		TTY:         c.Config.GetTty(),
	})
}

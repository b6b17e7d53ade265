package container

import (
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/containerio"
	"github.com/cri-containerd/cri-containerd/shimlog"
)

// NewIO makes the IO of a container: FIFOs under the state dir (so a
// restarted daemon re-opens the same pipes), the CRI log writer, and the
// handle on the shim-side log writer.
func (c *Controller) NewIO(ctr *Container) (*containerio.ContainerIO, error) {
	return containerio.New(containerio.Config{
		ID:          ctr.ID,
		FIFODir:     filepath.Join(c.o.Config.StateDir, "containers", ctr.ID, "io"),
		LogPath:     ctr.LogPath,
		Stdin:       ctr.Config.GetStdin(),
		StdinOnce:   ctr.Config.GetStdinOnce(),
		Tty:         ctr.Config.GetTty(),
		MaxLineSize: c.o.Config.MaxContainerLogLineSize,
		LogErrors:   c.o.LogErrors,
		Remote:      c.shimLogRemote(ctr),
		UseRemote:   c.o.Config.ContainerLogMode == config.ContainerLogModeShim,
	})
}

// shimLogRemote returns the handle on ctr's shim-side log writer (package
// shimlog), whatever the log mode, so that a task started in "shim" mode is
// re-attached after a restart in "daemon" mode too. A container with stdin
// and a terminal uses it with a stdin FIFO; one with stdin and no terminal
// keeps the output FIFOs (containerio decides: the runc shim's binary IO
// gives the process no stdin without a terminal).
func (c *Controller) shimLogRemote(ctr *Container) containerio.Remote {
	exe, err := os.Executable()
	if err != nil {
		klog.ErrorS(err, "Cannot find the daemon's executable for the shim log writer", "containerID", ctr.ID)
		exe = ""
	}
	// After an in-place upgrade the old file is gone; the new one is at the
	// same path.
	exe = strings.TrimSuffix(exe, " (deleted)")
	exe = shimlog.WriterExecutable(exe)
	return shimlog.NewRemote(shimlog.RemoteConfig{
		ID:          ctr.ID,
		Dir:         filepath.Join(c.o.Config.StateDir, "containers", ctr.ID),
		Executable:  exe,
		LogPath:     ctr.LogPath,
		MaxLineSize: c.o.Config.MaxContainerLogLineSize,
		TTY:         ctr.Config.GetTty(),
	})
}

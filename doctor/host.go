package doctor

import (
	"errors"
	"fmt"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cri-containerd/cri-containerd/shim"
)

// LinuxHost is the real Host: /proc/self/mountinfo, umount2, /proc, kill.
type LinuxHost struct {
	// Proc is the proc file system (default /proc).
	Proc string
}

func (h LinuxHost) proc() string {
	if h.Proc == "" {
		return "/proc"
	}
	return h.Proc
}

// Mounts implements Host.
func (LinuxHost) Mounts() ([]Mount, error) {
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	out := make([]Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, Mount{Mountpoint: m.Mountpoint, FSType: m.FSType})
	}
	return out, nil
}

// Unmount implements Host: a lazy unmount; "not mounted" is not an error.
func (LinuxHost) Unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	return nil
}

// Kill implements Host.
func (LinuxHost) Kill(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing pid %d: %w", pid, err)
	}
	return nil
}

// Shims implements Host: every containerd-shim* process with its
// -namespace, -id and -address arguments and its children.
func (h LinuxHost) Shims() ([]Shim, error) {
	return shim.Proc{Root: h.Proc}.List()
}

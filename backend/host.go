package backend

import (
	"errors"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// OS is the real Host: netns mounts (containerd's pkg/netns) and tmpfs mounts.
type OS struct{}

// NewNetNS creates a network namespace mounted in dir.
func (OS) NewNetNS(dir string) (NetNS, error) {
	ns, err := netns.NewNetNS(dir)
	if err != nil {
		return nil, err
	}
	return ns, nil
}

// LoadNetNS refers to the network namespace mounted at path.
func (OS) LoadNetNS(path string) NetNS { return netns.LoadNetNS(path) }

// MountShm mounts a private tmpfs of size bytes at path for a pod's /dev/shm.
func (OS) MountShm(path string, size int64) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("creating shm dir: %w", err)
	}
	opts := fmt.Sprintf("mode=1777,size=%d", size)
	if err := unix.Mount("shm", path, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mounting shm at %s: %w", path, err)
	}
	return nil
}

// UnmountShm unmounts the pod's shm if mounted (idempotent) and removes the dir.
func (OS) UnmountShm(path string) error {
	for {
		mounted, err := mountinfo.Mounted(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("checking shm mount %s: %w", path, err)
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting shm %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing shm dir: %w", err)
	}
	return nil
}

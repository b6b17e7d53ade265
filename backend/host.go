package backend

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/containerd/v2/pkg/sys"
	"github.com/moby/sys/mountinfo"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
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

// UsernsPinName is the file in a pod's netns directory where the user
// namespace owning its network namespace is pinned while the pause
// container is made.
const UsernsPinName = "userns"

// NewNetNSInUserns creates a network namespace owned by a new user namespace
// with the mappings, mounted in dir, and bind-mounts that user namespace at
// dir/userns: a process (containerd's helper) enters the user namespace,
// unshares a network namespace, and both are mounted from its /proc entry
// before it is killed. A pod whose user namespace owns its network
// namespace can mount sysfs and set net.* sysctls.
func (OS) NewNetNSInUserns(dir string, uid, gid runtimespec.LinuxIDMapping) (NetNS, string, error) {
	var ns *netns.NetNS
	pin := filepath.Join(dir, UsernsPinName)
	err := sys.UnshareAfterEnterUserns(
		fmt.Sprintf("%d:%d:%d", uid.ContainerID, uid.HostID, uid.Size),
		fmt.Sprintf("%d:%d:%d", gid.ContainerID, gid.HostID, gid.Size),
		unix.CLONE_NEWNET,
		func(pid int) error {
			n, err := netns.NewNetNSFromPID(dir, uint32(pid))
			if err != nil {
				return fmt.Errorf("mounting the network namespace of pid %d: %w", pid, err)
			}
			if err := bindFile(fmt.Sprintf("/proc/%d/ns/user", pid), pin); err != nil {
				_ = n.Remove()
				return fmt.Errorf("pinning the user namespace of pid %d: %w", pid, err)
			}
			ns = n
			return nil
		})
	if err != nil {
		if ns != nil {
			_ = ns.Remove()
			_ = unpin(pin)
		}
		return nil, "", fmt.Errorf("creating a network namespace in a user namespace (uids %d:%d:%d, gids %d:%d:%d): %w",
			uid.ContainerID, uid.HostID, uid.Size, gid.ContainerID, gid.HostID, gid.Size, err)
	}
	return ns, pin, nil
}

// UnpinUserns unmounts and removes a user namespace pinned by NewNetNSInUserns.
func (OS) UnpinUserns(path string) error { return unpin(path) }

// bindFile bind-mounts src on a new empty file dst.
func bindFile(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_ = f.Close()
	if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("bind-mounting %s on %s: %w", src, dst, err)
	}
	return nil
}

func unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

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

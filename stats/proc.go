package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// CountFDs counts the open file descriptors and, among them, the sockets of
// the given processes, reading procRoot/<pid>/fd ("/proc" on a host).
// Processes that are gone or not readable are skipped.
func CountFDs(procRoot string, pids []uint32) (fds, sockets uint64) {
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "fd")
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		fds += uint64(len(entries))
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(target, "socket:") {
				sockets++
			}
		}
	}
	return fds, sockets
}

// FsCapacity is what statfs says about the filesystem holding a path.
type FsCapacity struct {
	CapacityBytes uint64
	InodesTotal   uint64
	InodesFree    uint64
}

// Statfs returns the capacity of the filesystem holding path.
func Statfs(path string) (FsCapacity, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return FsCapacity{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	return FsCapacity{
		CapacityBytes: st.Blocks * uint64(st.Bsize),
		InodesTotal:   st.Files,
		InodesFree:    st.Ffree,
	}, nil
}

// BlockDeviceName names a block device by its numbers ("/dev/sda"), from
// sysfs; an unknown device is named "major:minor".
func BlockDeviceName(major, minor uint64) string {
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", major, minor))
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(line, "DEVNAME="); ok && name != "" {
				return "/dev/" + name
			}
		}
	}
	return fmt.Sprintf("%d:%d", major, minor)
}

// MountSource returns the source of the mount holding path (the block
// device for a disk filesystem, e.g. "/dev/vda1"), as cadvisor labels
// filesystem metrics.
func MountSource(path string) (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return "", fmt.Errorf("reading mounts of %s: %w", path, err)
	}
	var best *mountinfo.Info
	for _, m := range mounts {
		if best == nil || len(m.Mountpoint) > len(best.Mountpoint) {
			best = m
		}
	}
	if best == nil {
		return "", fmt.Errorf("no mount holds %s", path)
	}
	return best.Source, nil
}

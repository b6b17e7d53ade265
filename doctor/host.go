package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
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
	entries, err := os.ReadDir(h.proc())
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	var shims []Shim
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := h.ppid(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
		cmd, err := os.ReadFile(filepath.Join(h.proc(), e.Name(), "cmdline"))
		if err != nil || len(cmd) == 0 {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmd, "\x00")), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		s := Shim{Pid: pid}
		for i := 1; i+1 < len(args); i++ {
			switch strings.TrimLeft(args[i], "-") {
			case "namespace":
				s.Namespace = args[i+1]
			case "id":
				s.ID = args[i+1]
			case "address":
				s.Address = args[i+1]
			}
		}
		if fi, err := e.Info(); err == nil {
			s.Started = fi.ModTime()
		}
		shims = append(shims, s)
	}
	for i := range shims {
		shims[i].Children = children[shims[i].Pid]
	}
	return shims, nil
}

// ppid reads the parent pid from /proc/<pid>/stat.
func (h LinuxHost) ppid(pid int) (int, bool) {
	b, err := os.ReadFile(filepath.Join(h.proc(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}

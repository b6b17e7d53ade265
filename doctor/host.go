package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
		s.Started = h.startTime(pid)
		shims = append(shims, s)
	}
	for i := range shims {
		shims[i].Children = children[shims[i].Pid]
	}
	return shims, nil
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (field 3, the state, is the first).
func (h LinuxHost) statFields(pid int) []string {
	b, err := os.ReadFile(filepath.Join(h.proc(), strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// ppid reads the parent pid from /proc/<pid>/stat.
func (h LinuxHost) ppid(pid int) (int, bool) {
	f := h.statFields(pid)
	if len(f) < 2 {
		return 0, false
	}
	p, err := strconv.Atoi(f[1])
	return p, err == nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// startTime is when pid started (zero when unknown): boot time plus the
// starttime field (22) of /proc/<pid>/stat.
func (h LinuxHost) startTime(pid int) time.Time {
	f := h.statFields(pid)
	if len(f) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return time.Time{}
	}
	b, err := os.ReadFile(filepath.Join(h.proc(), "stat"))
	if err != nil {
		return time.Time{}
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / clockTicks)
		}
	}
	return time.Time{}
}

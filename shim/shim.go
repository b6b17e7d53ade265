// Package shim finds containerd shim processes by namespace and container
// ID in /proc, and kills the ones containerd no longer knows: a containerd
// killed while a task was being created can come back without the task,
// while its shim and the container's init keep running. cri-containerd
// reaps such shims when it removes the sandbox or container they served;
// `cri-containerd doctor` reports and repairs the others.
package shim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Process is one containerd shim process.
type Process struct {
	Pid       int
	Namespace string
	ID        string
	Address   string
	Started   time.Time
	// Children are the pids of its child processes (the container's init,
	// exec processes).
	Children []int
}

// Proc reads processes from a proc file system.
type Proc struct {
	// Root is the proc file system (default /proc).
	Root string
}

func (h Proc) proc() string {
	if h.Root == "" {
		return "/proc"
	}
	return h.Root
}

// Reaper kills the shims of removed objects.
type Reaper struct {
	Proc Proc
	// Kill sends SIGKILL (tests replace it).
	Kill func(pid int) error
	// RuncDelete removes runc's state of id under root after its processes
	// are gone (tests replace it; nil skips it).
	RuncDelete func(root, id string) error
}

// NewReaper reaps through /proc, kill(2) and `runc delete --force`.
func NewReaper() *Reaper {
	return &Reaper{Kill: killPid, RuncDelete: runcDelete}
}

func killPid(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("killing pid %d: %w", pid, err)
	}
	return nil
}

func runcDelete(root, id string) error {
	args := []string{"delete", "--force", id}
	if root != "" {
		args = append([]string{"--root", root}, args...)
	}
	out, err := exec.Command("runc", args...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not exist") {
		return fmt.Errorf("runc %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Reap kills every shim serving id in namespace, with its children, and
// removes runc's state of id under runcRoot ("" skips it). Call it only
// when containerd has no record of id any more (its container was deleted),
// so that no shim can legitimately serve it. It returns how many shims it
// killed.
func (r *Reaper) Reap(namespace, id, runcRoot string) (int, error) {
	shims, err := r.Proc.Find(namespace, id)
	if err != nil {
		return 0, fmt.Errorf("listing shims: %w", err)
	}
	n := 0
	var errs []error
	for _, s := range shims {
		if s.Namespace != namespace || s.ID != id {
			continue
		}
		klog.InfoS("Killing a shim containerd no longer knows", "namespace", namespace, "id", id, "pid", s.Pid, "children", s.Children)
		for _, c := range s.Children {
			errs = append(errs, r.Kill(c))
		}
		errs = append(errs, r.Kill(s.Pid))
		n++
	}
	if n > 0 && runcRoot != "" && r.RuncDelete != nil {
		errs = append(errs, r.RuncDelete(runcRoot, id))
	}
	return n, errors.Join(errs...)
}

// List returns every containerd-shim* process with its -namespace, -id and
// -address arguments and its children.
func (h Proc) List() ([]Process, error) {
	return h.find(func(Process) bool { return true })
}

// Find returns the shims of id in namespace, like List.
func (h Proc) Find(namespace, id string) ([]Process, error) {
	return h.find(func(p Process) bool { return p.Namespace == namespace && p.ID == id })
}

// find scans /proc once for the shims that match and, only when one does,
// once more for their children: a removal whose ID no shim serves (the
// usual case) reads one small file per process.
func (h Proc) find(match func(Process) bool) ([]Process, error) {
	entries, err := os.ReadDir(h.proc())
	if err != nil {
		return nil, err
	}
	var shims []Process
	var pids []int
	buf := make([]byte, 4096)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pids = append(pids, pid)
		cmd := readSmall(filepath.Join(h.proc(), e.Name(), "cmdline"), buf)
		if len(cmd) == 0 || !bytes.HasPrefix(baseName(cmd), []byte("containerd-shim")) {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmd, "\x00")), "\x00")
		s := Process{Pid: pid}
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
		if !match(s) {
			continue
		}
		s.Started = h.startTime(pid)
		shims = append(shims, s)
	}
	if len(shims) == 0 {
		return nil, nil
	}
	children := map[int][]int{}
	for _, pid := range pids {
		if ppid, ok := h.ppid(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	for i := range shims {
		shims[i].Children = children[shims[i].Pid]
	}
	return shims, nil
}

// readSmall reads the start of a small file into buf (nil on any error).
func readSmall(path string, buf []byte) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	n, _ := f.Read(buf)
	return buf[:n]
}

// baseName is the base name of the program in a NUL-separated command line.
func baseName(cmd []byte) []byte {
	if i := bytes.IndexByte(cmd, 0); i >= 0 {
		cmd = cmd[:i]
	}
	if i := bytes.LastIndexByte(cmd, '/'); i >= 0 {
		cmd = cmd[i+1:]
	}
	return cmd
}

// statFields returns the fields of /proc/<pid>/stat after the command name
// (field 3, the state, is the first).
func (h Proc) statFields(pid int) []string {
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
func (h Proc) ppid(pid int) (int, bool) {
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
func (h Proc) startTime(pid int) time.Time {
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

package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/errdefs"
)

// ReadProcessCgroup reads, in-process, the cgroup that process pid belongs
// to, as containerd's task metrics would report it; id (a container ID) must
// appear in the cgroup path, so that a reused pid is never mistaken for the
// task. The daemon must see the host's cgroup tree and pid namespace.
func ReadProcessCgroup(pid uint32, id string) (*Sample, error) {
	r := cgroupReader{mode: cgroups.Mode(), root: "/sys/fs/cgroup", now: time.Now}
	return r.readProcess("/proc", pid, id)
}

func (r cgroupReader) readProcess(procRoot string, pid uint32, id string) (*Sample, error) {
	if pid == 0 {
		return nil, fmt.Errorf("no process: %w", errdefs.ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join(procRoot, fmt.Sprint(pid), "cgroup"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("process %d: %w", pid, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("reading cgroup of process %d: %w", pid, err)
	}
	group, err := processGroup(data, r.mode == cgroups.Unified)
	if err != nil {
		return nil, fmt.Errorf("cgroup of process %d: %w", pid, err)
	}
	if id != "" && !strings.Contains(group, id) {
		return nil, fmt.Errorf("process %d is in cgroup %s, not one of %s: %w", pid, group, id, errdefs.ErrNotFound)
	}
	var s *Sample
	if r.mode == cgroups.Unified {
		s, err = r.readV2(group)
	} else {
		s, err = r.readV1(group)
	}
	if err != nil {
		return nil, err
	}
	s.ID = id
	return s, nil
}

// processGroup picks the cgroup path out of /proc/<pid>/cgroup: the unified
// ("0::") line on a cgroup v2 host, the memory (else cpuacct) controller's
// line on v1. Paths are relative to the reader's cgroup namespace.
func processGroup(data []byte, unified bool) (string, error) {
	var mem, cpuacct string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if unified {
			if parts[0] == "0" && parts[1] == "" {
				return parts[2], nil
			}
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			switch c {
			case "memory":
				mem = parts[2]
			case "cpuacct":
				cpuacct = parts[2]
			}
		}
	}
	switch {
	case mem != "":
		return mem, nil
	case cpuacct != "":
		return cpuacct, nil
	}
	return "", fmt.Errorf("no cgroup line to read: %w", errdefs.ErrNotFound)
}

// ProcessCgroupDir is the directory, in the host's cgroup tree, of the
// cgroup process pid belongs to: its unified cgroup on cgroup v2, its memory
// controller's cgroup on v1. id (a container ID) must appear in the path, so
// that a reused pid is never mistaken for the task.
func ProcessCgroupDir(pid uint32, id string) (string, error) {
	if pid == 0 {
		return "", fmt.Errorf("no process: %w", errdefs.ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "cgroup"))
	if err != nil {
		return "", fmt.Errorf("reading cgroup of process %d: %w", pid, err)
	}
	return cgroupDir("/sys/fs/cgroup", data, cgroups.Mode() == cgroups.Unified, id)
}

func cgroupDir(root string, data []byte, unified bool, id string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var dir string
		switch {
		case unified && parts[0] == "0" && parts[1] == "":
			dir = filepath.Join(root, parts[2])
		case !unified && parts[1] == "memory":
			dir = filepath.Join(root, "memory", parts[2])
		default:
			continue
		}
		if id != "" && !strings.Contains(parts[2], id) {
			return "", fmt.Errorf("cgroup %s is not one of %s: %w", parts[2], id, errdefs.ErrNotFound)
		}
		return dir, nil
	}
	return "", fmt.Errorf("no cgroup line to read: %w", errdefs.ErrNotFound)
}

// CgroupEmpty reports whether the cgroup at dir has no process left, in it
// or in a cgroup below it. An error (e.g. the cgroup is gone) is not an
// answer: the caller must assume processes may be left.
func CgroupEmpty(dir string) (bool, error) {
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return false, err
	}
	if len(bytes.TrimSpace(procs)) != 0 {
		return false, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.IsDir() {
			return false, nil // a child cgroup: not looked into
		}
	}
	return true, nil
}

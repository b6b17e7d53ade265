package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPU time by owner (issue 9: where a pod's CPU goes). Each accounted
// process is moved into a cgroup v1 cpuacct group of its own for the run,
// so that the group also counts every process it starts from then on (a
// containerd's shims and runc, a CRI daemon's CNI plugins and iptables);
// the process's own share comes from /proc. The containers run in their own
// cgroups and, with the kernel's threads, make the rest of the machine's
// total. Accounting only: cpuacct limits nothing. Where the host has no
// cgroup v1 cpuacct hierarchy, nothing is split.

// CPUSplit is CPU seconds by owner over one phase: "all" (the machine),
// "<name>" (the process itself), "<name> children" (what it started since
// it was moved), "rest" (containers, kernel threads, everything else).
type CPUSplit map[string]float64

// accountSpec is one --account NAME=PID.
type accountSpec struct {
	name string
	pid  int
}

func parseAccountSpec(s string) (accountSpec, error) {
	name, pid, ok := strings.Cut(s, "=")
	n, err := strconv.Atoi(pid)
	if !ok || name == "" || err != nil || n <= 0 {
		return accountSpec{}, fmt.Errorf("--account wants NAME=PID, got %q", s)
	}
	return accountSpec{name: name, pid: n}, nil
}

// accountFlag collects repeated --account flags.
type accountFlag []accountSpec

func (f *accountFlag) String() string { return fmt.Sprint(*f) }
func (f *accountFlag) Set(s string) error {
	a, err := parseAccountSpec(s)
	if err != nil {
		return err
	}
	*f = append(*f, a)
	return nil
}

type cpuOwner struct {
	accountSpec
	dir  string // its group for the run
	orig string // the group it came from
}

// cpuAccount is the accounting of one run.
type cpuAccount struct {
	root     string // the cpuacct hierarchy
	procRoot string
	hz       float64
	owners   []cpuOwner
	rmdir    func(string) error // os.Remove (a cgroup's directory goes with its control files)
}

// cpuReading is the counters at one instant, in seconds.
type cpuReading struct {
	all   float64
	group map[string]float64 // by owner: its group's usage
	self  map[string]float64 // by owner: the process's own
}

const cpuacctRoot = "/sys/fs/cgroup/cpuacct"

// newCPUAccount moves each owner into a group of its own under root
// (cri-scale-<name>). It returns nil, nil when root is not a cpuacct
// hierarchy.
func newCPUAccount(root, procRoot string, specs []accountSpec) (*cpuAccount, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if _, err := os.Stat(filepath.Join(root, "cpuacct.usage")); err != nil {
		return nil, nil
	}
	a := &cpuAccount{root: root, procRoot: procRoot, hz: 100, rmdir: os.Remove}
	for _, s := range specs {
		orig, err := cpuacctGroupOf(procRoot, s.pid)
		if err != nil {
			a.close()
			return nil, err
		}
		o := cpuOwner{accountSpec: s, dir: filepath.Join(root, "cri-scale-"+s.name), orig: filepath.Join(root, orig)}
		if err := os.MkdirAll(o.dir, 0o755); err != nil {
			a.close()
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(o.dir, "cgroup.procs"), []byte(strconv.Itoa(s.pid)), 0o644); err != nil {
			_ = a.rmdir(o.dir)
			a.close()
			return nil, fmt.Errorf("moving %s (pid %d) into %s: %w", s.name, s.pid, o.dir, err)
		}
		a.owners = append(a.owners, o)
	}
	return a, nil
}

// cpuacctGroupOf is pid's cpuacct group, relative to the hierarchy's root.
func cpuacctGroupOf(procRoot string, pid int) (string, error) {
	f, err := os.Open(fmt.Sprintf("%s/%d/cgroup", procRoot, pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpuacct" {
				return parts[2], nil
			}
		}
	}
	return "", fmt.Errorf("pid %d has no cpuacct cgroup", pid)
}

func readUsage(dir string) float64 {
	b, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return 0
	}
	ns, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	return ns / 1e9
}

func (a *cpuAccount) read() cpuReading {
	r := cpuReading{group: map[string]float64{}, self: map[string]float64{}}
	if a == nil {
		return r
	}
	r.all = readUsage(a.root)
	for _, o := range a.owners {
		r.group[o.name] = readUsage(o.dir)
		if b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", a.procRoot, o.pid)); err == nil {
			r.self[o.name] = parseStatCPU(string(b), a.hz)
		}
	}
	return r
}

// split is the CPU of each owner between two readings.
func (a *cpuAccount) split(r0, r1 cpuReading) CPUSplit {
	if a == nil {
		return nil
	}
	s := CPUSplit{"all": r1.all - r0.all}
	rest := s["all"]
	for _, o := range a.owners {
		group := r1.group[o.name] - r0.group[o.name]
		self := min(r1.self[o.name]-r0.self[o.name], group) // tick granularity
		s[o.name] = self
		s[o.name+" children"] = group - self
		rest -= group
	}
	s["rest"] = max(rest, 0)
	return s
}

// close moves every owner, and whatever of its children is still in its
// group, back where the owner came from, and removes the groups.
func (a *cpuAccount) close() error {
	if a == nil {
		return nil
	}
	var errs []error
	for _, o := range a.owners {
		for range 3 {
			b, err := os.ReadFile(filepath.Join(o.dir, "cgroup.procs"))
			if err != nil {
				break
			}
			for _, pid := range strings.Fields(string(b)) {
				// a process that exited meanwhile cannot be moved: no error
				_ = os.WriteFile(filepath.Join(o.orig, "cgroup.procs"), []byte(pid), 0o644)
			}
			if a.rmdir(o.dir) == nil {
				break
			}
		}
		if _, err := os.Stat(o.dir); err == nil {
			errs = append(errs, fmt.Errorf("cgroup %s could not be removed", o.dir))
		}
	}
	a.owners = nil
	return errors.Join(errs...)
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/containerd/errdefs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
)

// LeakScope names what belongs to this campaign.
type LeakScope struct {
	StateDir, RootDir string // the daemon's --state-dir / --root-dir
	IPAMDir           string // host-local dataDir/<network>
	Network           string // CNI network name (iptables comments carry it)
	ContainerdAddress string
	Namespace         string
	Snapshotter       string
	CNICacheDir       string // libcni's cache (results/<network>-<id>-<ifname>)
}

// MountsUnder lists mount points at or below prefix in /proc/self/mountinfo
// text.
func MountsUnder(mountinfo []byte, prefix string) []string {
	prefix = strings.TrimRight(prefix, "/")
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == prefix || strings.HasPrefix(mp, prefix+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// IPAMAllocations lists host-local allocation files (one per IP) in a
// network's data dir: everything but the lock and last_reserved_ip files.
func IPAMAllocations(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if n == "lock" || strings.HasPrefix(n, "last_reserved_ip") {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// ShimOf reports whether a /proc/<pid>/cmdline (NUL-separated) is a runc
// shim started by the containerd at address for namespace.
func ShimOf(cmdline []byte, address, namespace string) bool {
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
		return false
	}
	var addr, ns string
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-address", "--address":
			addr = args[i+1]
		case "-namespace", "--namespace":
			ns = args[i+1]
		}
	}
	return addr == address && ns == namespace
}

// Shims lists the pids of shims of our containerd and namespace.
func Shims(address, namespace string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && ShimOf(b, address, namespace) {
			out = append(out, pid)
		}
	}
	return out
}

// IptablesChains returns the chains (and POSTROUTING rules, as
// "POSTROUTING:<n>") that carry a CNI comment naming network, in
// iptables-save output.
func IptablesChains(save []byte, network string) []string {
	tag := fmt.Sprintf(`name: \"%s\"`, network)
	seen := map[string]bool{}
	var out []string
	post := 0
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 1024*1024), 1024*1024)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "-A ") || !strings.Contains(l, tag) {
			continue
		}
		chain := strings.Fields(l)[1]
		if !strings.HasPrefix(chain, "CNI-") {
			post++
			out = append(out, fmt.Sprintf("%s:%d", chain, post))
			continue
		}
		if !seen[chain] {
			seen[chain] = true
			out = append(out, chain)
		}
	}
	return out
}

// FilesUnder lists the non-directory entries and the per-object
// directories (named like a 64-hex ID) below the given dirs.
func FilesUnder(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || p == d {
				return nil
			}
			if !e.IsDir() || isID(e.Name()) {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Leaks is what the leak scan found, by kind, with examples.
type Leaks struct {
	Counts  map[string]int
	Details []string
}

func (l *Leaks) add(kind string, items []string) {
	l.Counts[kind] += len(items)
	for i, it := range items {
		if i == 5 {
			l.Details = append(l.Details, fmt.Sprintf("%s: ... %d more", kind, len(items)-5))
			break
		}
		l.Details = append(l.Details, kind+": "+it)
	}
}

// ScanLeaks checks the truth after the final cleanup. cli may be nil
// (containerd not reachable: the containerd rows are then reported as
// errors in Details and counted as 1).
func ScanLeaks(ctx context.Context, s LeakScope, cli *containerd.Client, withImages bool) Leaks {
	l := Leaks{Counts: map[string]int{}}
	for _, k := range []string{"netns mounts", "mounts under state/root", "IPAM allocations", "containerd containers", "containerd tasks", "containerd snapshots", "containerd leases", "containerd sandbox records", "shim processes", "CNI iptables chains", "CNI result cache", "files under state/root"} {
		l.Counts[k] = 0
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		l.add("netns mounts", MountsUnder(mi, filepath.Join(s.StateDir, "netns")))
		var other []string
		for _, m := range append(MountsUnder(mi, s.StateDir), MountsUnder(mi, s.RootDir)...) {
			if !strings.HasPrefix(m, filepath.Join(s.StateDir, "netns")+"/") {
				other = append(other, m)
			}
		}
		l.add("mounts under state/root", other)
	}
	if ips, err := IPAMAllocations(s.IPAMDir); err == nil {
		l.add("IPAM allocations", ips)
	} else {
		l.add("IPAM allocations", []string{err.Error()})
	}
	if cli != nil {
		if cs, err := cli.Containers(ctx); err == nil {
			var ids []string
			for _, c := range cs {
				ids = append(ids, c.ID())
			}
			l.add("containerd containers", ids)
		} else {
			l.add("containerd containers", []string{err.Error()})
		}
		if ts, err := cli.TaskService().List(ctx, &tasks.ListTasksRequest{}); err == nil {
			var ids []string
			for _, t := range ts.Tasks {
				ids = append(ids, t.ID)
			}
			l.add("containerd tasks", ids)
		} else {
			l.add("containerd tasks", []string{err.Error()})
		}
		var snaps []string
		err := cli.SnapshotService(s.Snapshotter).Walk(ctx, func(_ context.Context, i snapshots.Info) error {
			if withImages || i.Kind != snapshots.KindCommitted {
				snaps = append(snaps, fmt.Sprintf("%s (%s)", i.Name, i.Kind))
			}
			return nil
		})
		if err != nil {
			snaps = append(snaps, err.Error())
		}
		l.add("containerd snapshots", snaps)
		if ls, err := cli.LeasesService().List(ctx); err == nil {
			var ids []string
			for _, x := range ls {
				ids = append(ids, fmt.Sprintf("%s (created %s, labels %v)", x.ID, x.CreatedAt.Format(time.RFC3339), x.Labels))
			}
			l.add("containerd leases", ids)
		} else {
			l.add("containerd leases", []string{err.Error()})
		}
		if rs, err := cli.SandboxStore().List(ctx); err == nil {
			var ids []string
			for _, r := range rs {
				ids = append(ids, r.ID)
			}
			l.add("containerd sandbox records", ids)
		} else if !errdefs.IsNotImplemented(err) { // containerd 1.6 has none
			l.add("containerd sandbox records", []string{err.Error()})
		}
	} else {
		l.add("containerd containers", []string{"containerd not reachable"})
	}
	var shims []string
	for _, p := range Shims(s.ContainerdAddress, s.Namespace) {
		shims = append(shims, fmt.Sprint(p))
	}
	l.add("shim processes", shims)
	if out, err := exec.Command("iptables-save", "-t", "nat").Output(); err == nil {
		l.add("CNI iptables chains", IptablesChains(out, s.Network))
	}
	if s.CNICacheDir != "" {
		var cached []string
		ents, _ := os.ReadDir(filepath.Join(s.CNICacheDir, "results"))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), s.Network+"-") {
				cached = append(cached, e.Name())
			}
		}
		l.add("CNI result cache", cached)
	}
	l.add("files under state/root", FilesUnder(s.StateDir, s.RootDir))
	return l
}

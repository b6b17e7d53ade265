package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// events records the order of side effects across the fakes.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(format string, a ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, fmt.Sprintf(format, a...))
}

func (e *events) index(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, l := range e.log {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

type fakeContainerd struct {
	ev        *events
	records   []Record
	otherNS   map[string]string // id -> namespace
	tasks     []Task
	snapshots map[string][]Snapshot
	leases    []Lease
	sbRecords []Lease
	execs     map[string]bool // id/execID
}

func (f *fakeContainerd) Containers(context.Context) ([]Record, error) { return f.records, nil }

func (f *fakeContainerd) AllContainerIDs(context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range f.records {
		out[r.ID] = "ours"
	}
	for id, ns := range f.otherNS {
		out[id] = ns
	}
	return out, nil
}

func (f *fakeContainerd) Tasks(context.Context) ([]Task, error) { return f.tasks, nil }

func (f *fakeContainerd) Snapshots(_ context.Context, sn string) ([]Snapshot, error) {
	return f.snapshots[sn], nil
}

func (f *fakeContainerd) Leases(context.Context) ([]Lease, error) { return f.leases, nil }

func (f *fakeContainerd) ProcessExists(_ context.Context, id, execID string) (bool, error) {
	return f.execs[id+"/"+execID], nil
}

func (f *fakeContainerd) DeleteTask(_ context.Context, id string) error {
	f.ev.add("delete-task %s", id)
	for i, t := range f.tasks {
		if t.ID == id {
			f.tasks = append(f.tasks[:i], f.tasks[i+1:]...)
			return nil
		}
	}
	return nil
}

func (f *fakeContainerd) RemoveSnapshot(_ context.Context, sn, key string) error {
	f.ev.add("remove-snapshot %s %s", sn, key)
	list := f.snapshots[sn]
	for i, s := range list {
		if s.Key == key {
			f.snapshots[sn] = append(list[:i], list[i+1:]...)
			return nil
		}
	}
	return nil
}

func (f *fakeContainerd) SandboxRecords(context.Context) ([]Lease, error) { return f.sbRecords, nil }

func (f *fakeContainerd) DeleteSandboxRecord(_ context.Context, id string) error {
	f.ev.add("delete-sandbox-record %s", id)
	for i, l := range f.sbRecords {
		if l.ID == id {
			f.sbRecords = append(f.sbRecords[:i], f.sbRecords[i+1:]...)
			return nil
		}
	}
	return errdefs.ErrNotFound
}

func (f *fakeContainerd) DeleteLease(_ context.Context, id string) error {
	f.ev.add("delete-lease %s", id)
	for i, l := range f.leases {
		if l.ID == id {
			f.leases = append(f.leases[:i], f.leases[i+1:]...)
			return nil
		}
	}
	return errdefs.ErrNotFound
}

type fakeHost struct {
	ev     *events
	mounts []Mount
	shims  []Shim
	killed []int
}

func (h *fakeHost) Mounts() ([]Mount, error) { return append([]Mount(nil), h.mounts...), nil }

func (h *fakeHost) Unmount(path string) error {
	for i, m := range h.mounts {
		if m.Mountpoint == path {
			h.ev.add("unmount %s", path)
			h.mounts = append(h.mounts[:i], h.mounts[i+1:]...)
			return nil
		}
	}
	return nil
}

func (h *fakeHost) Shims() ([]Shim, error) { return h.shims, nil }

func (h *fakeHost) Kill(pid int) error {
	h.ev.add("kill %d", pid)
	h.killed = append(h.killed, pid)
	for i, s := range h.shims {
		if s.Pid == pid {
			h.shims = append(h.shims[:i], h.shims[i+1:]...)
		}
	}
	return nil
}

// fakeIPTables holds one nat table as iptables -S lines.
type fakeIPTables struct {
	ev    *events
	lines []string
}

func (f *fakeIPTables) Rules(_ context.Context, v6 bool, _ string) ([]string, error) {
	if v6 {
		return nil, ErrNoIPTables
	}
	return append([]string(nil), f.lines...), nil
}

func (f *fakeIPTables) Run(_ context.Context, _ bool, args ...string) error {
	f.ev.add("iptables %s", strings.Join(args, " "))
	if len(args) < 4 {
		return fmt.Errorf("bad args %v", args)
	}
	switch args[2] {
	case "-D":
		t := parseIPTables(false, "nat", f.lines)
		for i, l := range f.lines {
			w := splitIPTablesLine(l)
			if len(w) > 2 && w[0] == "-A" && w[1] == args[3] && strings.Join(w[2:], "\x00") == strings.Join(args[4:], "\x00") {
				f.lines = append(f.lines[:i], f.lines[i+1:]...)
				return nil
			}
		}
		_ = t
		return fmt.Errorf("Bad rule (does a matching rule exist in that chain?)")
	case "-F":
		var keep []string
		for _, l := range f.lines {
			if !strings.HasPrefix(l, "-A "+args[3]+" ") {
				keep = append(keep, l)
			}
		}
		f.lines = keep
	case "-X":
		for i, l := range f.lines {
			if l == "-N "+args[3] {
				f.lines = append(f.lines[:i], f.lines[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("No chain/target/match by that name")
	}
	return nil
}

// fakeCNI is a CNI whose DEL releases like host-local and portmap would
// (removes the IPAM file naming the ID, the pod's chains, the cache entry),
// or fails.
type fakeCNI struct {
	ev       *events
	fail     bool
	ipamDir  string
	cacheDir string
	ipt      *fakeIPTables
	dels     []DelRequest
}

func (c *fakeCNI) Del(_ context.Context, r DelRequest) error {
	c.ev.add("cni-del %s %s netns=%s", r.Network, r.ContainerID, r.NetNS)
	c.dels = append(c.dels, r)
	if c.fail {
		return fmt.Errorf("plugin type=\"portmap\" failed (delete): boom")
	}
	if c.ipamDir != "" {
		allocs, _ := readIPAMDir(c.ipamDir)
		for _, a := range allocs {
			if a.ID == r.ContainerID {
				_ = os.Remove(a.Path)
			}
		}
	}
	if c.ipt != nil {
		var keep []string
		for _, l := range c.ipt.lines {
			if !strings.Contains(l, r.ContainerID) && !strings.Contains(l, cniChainName(r.Network, r.ContainerID, "")) && !strings.Contains(l, cniChainName(r.Network, r.ContainerID, "DN-")) {
				keep = append(keep, l)
			}
		}
		c.ipt.lines = keep
	}
	_ = os.Remove(filepath.Join(c.cacheDir, "results", fmt.Sprintf("%s-%s-%s", r.Network, r.ContainerID, r.IfName)))
	return nil
}

// node is a test node: dirs under a temp dir, fakes, one CNI network.
type node struct {
	t        *testing.T
	ev       *events
	root     string
	state    string
	confDir  string
	ipamDir  string // <dataDir>/<net>
	cacheDir string
	ctrd     *fakeContainerd
	host     *fakeHost
	ipt      *fakeIPTables
	cni      *fakeCNI
	now      time.Time
}

const testNet = "doctor-net"

func newNode(t *testing.T) *node {
	t.Helper()
	base := t.TempDir()
	ev := &events{}
	n := &node{
		t: t, ev: ev,
		root: filepath.Join(base, "root"), state: filepath.Join(base, "state"),
		confDir: filepath.Join(base, "net.d"), cacheDir: filepath.Join(base, "cni-cache"),
		now: time.Now().Add(time.Hour), // everything made by the test is old
	}
	dataDir := filepath.Join(base, "ipam")
	n.ipamDir = filepath.Join(dataDir, testNet)
	for _, d := range []string{n.root, n.state, n.confDir, n.ipamDir, filepath.Join(n.cacheDir, "results")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"bridge","bridge":"x0","ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.99.0.0/24"}]]}},{"type":"portmap","capabilities":{"portMappings":true}}]}`, testNet, dataDir)
	must(t, os.WriteFile(filepath.Join(n.confDir, "10-test.conflist"), []byte(conf), 0o644))
	n.ctrd = &fakeContainerd{ev: ev, snapshots: map[string][]Snapshot{}, execs: map[string]bool{}}
	n.host = &fakeHost{ev: ev}
	n.ipt = &fakeIPTables{ev: ev, lines: []string{
		"-P PREROUTING ACCEPT",
		"-N CNI-HOSTPORT-DNAT",
		"-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
	}}
	n.cni = &fakeCNI{ev: ev, ipamDir: n.ipamDir, cacheDir: n.cacheDir, ipt: n.ipt}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (n *node) doctor(grace time.Duration) *Doctor {
	return New(Options{
		RootDir: n.root, StateDir: n.state, Namespace: "ours", Endpoint: "/run/containerd/containerd.sock",
		Snapshotters: []string{"overlayfs"}, CNIConfDir: n.confDir, CNICacheDir: n.cacheDir,
		Grace: grace, Now: func() time.Time { return n.now },
	}, n.ctrd, n.host, n.ipt, n.cni)
}

func testID(c byte) string { return strings.Repeat(string(c), 64) }

// addSandboxRecord adds a containerd record of a sandbox.
func (n *node) addSandboxRecord(id string, md *sandbox.Metadata) {
	exts := map[string]typeurl.Any{}
	if md != nil {
		a, err := typeurl.MarshalAny(md)
		must(n.t, err)
		exts[sandbox.MetadataExtension] = a
	} else {
		exts[sandbox.MetadataExtension] = &fakeAny{url: "unknown.type/Garbage", value: []byte("{")}
	}
	n.ctrd.records = append(n.ctrd.records, Record{ID: id, Labels: map[string]string{sandbox.LabelKind: sandbox.KindSandbox},
		Extensions: exts, Snapshotter: "overlayfs", SnapshotKey: id})
}

// addContainerRecord adds a containerd record of a workload container.
func (n *node) addContainerRecord(id, sandboxID string) {
	a, err := typeurl.MarshalAny(&container.Metadata{ID: id, SandboxID: sandboxID})
	must(n.t, err)
	n.ctrd.records = append(n.ctrd.records, Record{ID: id, Labels: map[string]string{sandbox.LabelKind: sandbox.KindContainer},
		Extensions: map[string]typeurl.Any{container.MetadataExtension: a}, Snapshotter: "overlayfs", SnapshotKey: id})
}

type fakeAny struct {
	url   string
	value []byte
}

func (a *fakeAny) GetTypeUrl() string { return a.url }
func (a *fakeAny) GetValue() []byte   { return a.value }

// addPodNetwork makes everything a pod with a network has on the node:
// netns mount, pod dirs, IP file, cache entry, bridge and portmap chains.
func (n *node) addPodNetwork(id, ip string) {
	nsPath := filepath.Join(n.state, "netns", id, "netns")
	must(n.t, os.MkdirAll(filepath.Dir(nsPath), 0o755))
	must(n.t, os.WriteFile(nsPath, nil, 0o644))
	n.host.mounts = append(n.host.mounts, Mount{Mountpoint: nsPath, FSType: "nsfs"})
	for _, d := range []string{filepath.Join(n.state, "sandboxes", id), filepath.Join(n.root, "sandboxes", id)} {
		must(n.t, os.MkdirAll(d, 0o755))
	}
	shm := filepath.Join(n.state, "sandboxes", id, "shm")
	must(n.t, os.MkdirAll(shm, 0o755))
	n.host.mounts = append(n.host.mounts, Mount{Mountpoint: shm, FSType: "tmpfs"})
	must(n.t, os.WriteFile(filepath.Join(n.ipamDir, ip), []byte(id+"\r\neth0"), 0o644))
	cache := fmt.Sprintf(`{"kind":"cniCacheV1","containerId":%q,"config":"e30=","ifName":"eth0","networkName":%q,"cniArgs":[["K8S_POD_NAME","p"]],"capabilityArgs":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}}`, id, testNet)
	must(n.t, os.WriteFile(filepath.Join(n.cacheDir, "results", testNet+"-"+id+"-eth0"), []byte(cache), 0o600))
	lo := fmt.Sprintf(`{"kind":"cniCacheV1","containerId":%q,"config":"e30=","ifName":"lo","networkName":"cni-loopback"}`, id)
	must(n.t, os.WriteFile(filepath.Join(n.cacheDir, "results", "cni-loopback-"+id+"-lo"), []byte(lo), 0o600))
	masq := cniChainName(testNet, id, "")
	dn := cniChainName(testNet, id, "DN-")
	comment := fmt.Sprintf(`"name: \"%s\" id: \"%s\""`, testNet, id)
	n.ipt.lines = append(n.ipt.lines,
		"-N "+masq,
		"-N "+dn,
		fmt.Sprintf("-A POSTROUTING -s %s/32 -m comment --comment %s -j %s", ip, comment, masq),
		fmt.Sprintf("-A %s -d 10.99.0.0/24 -m comment --comment %s -j ACCEPT", masq, comment),
		fmt.Sprintf(`-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"%s\" id: \"%s\"" -m multiport --dports 8080 -j %s`, testNet, id, dn),
		fmt.Sprintf("-A %s -p tcp -m tcp --dport 8080 -j DNAT --to-destination %s:80", dn, ip),
	)
}

func (n *node) addContainerDirs(id string, fifos ...string) {
	must(n.t, os.MkdirAll(filepath.Join(n.root, "containers", id), 0o700))
	io := filepath.Join(n.state, "containers", id, "io")
	must(n.t, os.MkdirAll(io, 0o700))
	for _, f := range fifos {
		must(n.t, mkfifo(filepath.Join(io, f)))
	}
}

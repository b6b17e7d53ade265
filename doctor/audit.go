package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/extension"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// imageVolumeSnapshotPrefix and imageVolumeLeasePrefix are the names the
// daemon gives a sandbox's image-volume snapshots and lease (server/container_image_mount.go).
const (
	imageVolumeSnapshotPrefix = "cri-containerd-imagevolume-"
	imageVolumeLeasePrefix    = "cri-containerd-imagevolumes-"
	gcExpireLabel             = "containerd.io/gc.expire"
)

// Doctor audits (and repairs) one daemon's node state.
type Doctor struct {
	opts Options
	ctrd Containerd
	host Host
	ipt  IPTables
	cni  CNI
}

// New returns a Doctor over the given dependencies.
func New(opts Options, ctrd Containerd, host Host, ipt IPTables, cni CNI) *Doctor {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CNICacheDir == "" {
		opts.CNICacheDir = DefaultCNICacheDir
	}
	return &Doctor{opts: opts, ctrd: ctrd, host: host, ipt: ipt, cni: cni}
}

// truth is what containerd says exists.
type truth struct {
	records    map[string]Record
	sandboxes  map[string]*sandbox.Metadata
	containers map[string]*container.Metadata
	allIDs     map[string]string // every namespace
	tasks      []Task
	networks   []network
	netNames   map[string]bool
}

// liveNetwork reports whether the network objects of id belong to something:
// a containerd container of that ID exists in some namespace and, if it is
// one of our sandboxes, its network has not been torn down.
func (t *truth) liveNetwork(id string) bool {
	if _, ok := t.allIDs[id]; !ok {
		return false
	}
	if md, ok := t.sandboxes[id]; ok && md.NetworkTornDown {
		return false
	}
	return true
}

func (t *truth) networkReason(id string) string {
	if md, ok := t.sandboxes[id]; ok && md.NetworkTornDown {
		return "its sandbox's network was torn down (CNI DEL succeeded) but this remains"
	}
	return "no containerd container of this ID in any namespace"
}

func (d *Doctor) load(ctx context.Context) (*truth, []Finding, error) {
	recs, err := d.ctrd.Containers(ctx)
	if err != nil {
		return nil, nil, err
	}
	t := &truth{
		records:    map[string]Record{},
		sandboxes:  map[string]*sandbox.Metadata{},
		containers: map[string]*container.Metadata{},
		netNames:   map[string]bool{},
	}
	var out []Finding
	for _, r := range recs {
		t.records[r.ID] = r
		switch kind := r.Labels[sandbox.LabelKind]; kind {
		case sandbox.KindSandbox:
			md, err := extension.Decode[sandbox.Metadata](r.Extensions, sandbox.MetadataExtension)
			if err != nil {
				out = append(out, Finding{Kind: KindContainer, ID: r.ID, Path: "containerd container (sandbox)",
					Reason: fmt.Sprintf("sandbox metadata cannot be decoded (%v); it may be recoverable, so it is never removed", err)})
				continue
			}
			t.sandboxes[r.ID] = md
		case sandbox.KindContainer:
			md, err := extension.Decode[container.Metadata](r.Extensions, container.MetadataExtension)
			if err != nil {
				out = append(out, Finding{Kind: KindContainer, ID: r.ID, Path: "containerd container (container)",
					Reason: fmt.Sprintf("container metadata cannot be decoded (%v); it may be recoverable, so it is never removed", err)})
				continue
			}
			t.containers[r.ID] = md
		default:
			out = append(out, Finding{Kind: KindContainer, ID: r.ID, Path: "containerd container",
				Reason: fmt.Sprintf("no %s label: not made by cri-containerd, but in its namespace (report only)", sandbox.LabelKind)})
		}
	}
	for id, md := range t.containers {
		if _, ok := t.records[md.SandboxID]; !ok {
			out = append(out, Finding{Kind: KindContainer, ID: id, Path: "containerd container (container)",
				Reason: fmt.Sprintf("its sandbox %s has no containerd container; the daemon still lists it, remove it through CRI (report only)", short(md.SandboxID))})
		}
	}
	if t.allIDs, err = d.ctrd.AllContainerIDs(ctx); err != nil {
		return nil, nil, err
	}
	if t.tasks, err = d.ctrd.Tasks(ctx); err != nil {
		return nil, nil, err
	}
	return t, out, nil
}

// Audit lists what is orphaned. An error means the audit could not be made
// (containerd unreachable); parts that could not run are Report.Warnings.
func (d *Doctor) Audit(ctx context.Context) (*Report, error) {
	t, findings, err := d.load(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{Namespace: d.opts.Namespace, Findings: findings}
	rep.Owned.Sandboxes, rep.Owned.Containers = len(t.sandboxes), len(t.containers)
	for _, tk := range t.tasks {
		if _, ok := t.records[tk.ID]; ok {
			rep.Owned.Tasks++
		}
	}
	warn := func(format string, a ...any) { rep.Warnings = append(rep.Warnings, fmt.Sprintf(format, a...)) }
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }

	d.auditTasks(ctx, t, rep, add, warn)
	d.auditStorage(ctx, t, add, warn)
	d.auditDirs(ctx, t, add, warn)

	nets, err := loadNetworks(d.opts.CNIConfDir)
	if err != nil {
		warn("CNI config not read, IP allocations and CNI chains not audited: %v", err)
	}
	t.networks = nets
	for _, n := range nets {
		t.netNames[n.Name] = true
	}
	d.auditNetwork(ctx, t, rep, add, warn)

	// A group (one ID) is repaired whole or not at all: if any of its
	// objects is young, the others are left alone too.
	young := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Young && f.ID != "" {
			young[f.ID] = true
		}
	}
	for i := range rep.Findings {
		if young[rep.Findings[i].ID] && rep.Findings[i].Repairable {
			rep.Findings[i].Young = true
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		a, b := rep.Findings[i], rep.Findings[j]
		if a.Kind != b.Kind {
			return kindOrder(a.Kind) < kindOrder(b.Kind)
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Path < b.Path
	})
	return rep, nil
}

func kindOrder(k Kind) int {
	for i, x := range []Kind{KindContainer, KindTask, KindShim, KindNetNS, KindIPAM, KindCNICache, KindIPTables, KindDir, KindFIFO, KindSnapshot, KindLease} {
		if x == k {
			return i
		}
	}
	return 100
}

func (d *Doctor) young(at time.Time) bool {
	return !at.IsZero() && d.opts.Now().Sub(at) < d.opts.Grace
}

func (d *Doctor) auditTasks(ctx context.Context, t *truth, rep *Report, add func(Finding), warn func(string, ...any)) {
	taskPids := map[int]bool{}
	for _, tk := range t.tasks {
		taskPids[int(tk.Pid)] = true
		if _, ok := t.records[tk.ID]; !ok {
			add(Finding{Kind: KindTask, ID: tk.ID, Path: fmt.Sprintf("task pid %d (%s)", tk.Pid, strings.ToLower(tk.Status)),
				Reason: "task without a containerd container record", Repairable: true})
		}
	}
	if d.host == nil {
		return
	}
	shims, err := d.host.Shims()
	if err != nil {
		warn("shim processes not audited: %v", err)
		return
	}
	for _, s := range shims {
		if s.Namespace != d.opts.Namespace || !sameSocket(s.Address, d.opts.Endpoint) {
			continue
		}
		if _, ok := t.records[s.ID]; ok {
			continue
		}
		serving := false
		for _, c := range s.Children {
			if taskPids[c] {
				serving = true
			}
		}
		if serving {
			continue
		}
		add(Finding{Kind: KindShim, ID: s.ID, Path: fmt.Sprintf("pid %d", s.Pid), pid: s.Pid,
			Reason: "shim of an ID with no containerd container, serving no known task", Repairable: true, Young: d.young(s.Started)})
	}
}

// sameSocket compares a shim's -address with the configured endpoint.
func sameSocket(addr, endpoint string) bool {
	if addr == "" || endpoint == "" {
		return true
	}
	clean := func(s string) string {
		return filepath.Clean(strings.TrimPrefix(strings.TrimPrefix(s, "unix://"), "unix:"))
	}
	return clean(addr) == clean(endpoint)
}

func (d *Doctor) auditStorage(ctx context.Context, t *truth, add func(Finding), warn func(string, ...any)) {
	snapshotters := map[string]bool{}
	for _, s := range d.opts.Snapshotters {
		if s != "" {
			snapshotters[s] = true
		}
	}
	referenced := map[string]bool{}
	for _, r := range t.records {
		if r.Snapshotter != "" {
			snapshotters[r.Snapshotter] = true
		}
		referenced[r.Snapshotter+"\x00"+r.SnapshotKey] = true
	}
	names := make([]string, 0, len(snapshotters))
	for s := range snapshotters {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, sn := range names {
		snaps, err := d.ctrd.Snapshots(ctx, sn)
		if err != nil {
			warn("snapshots of %s not audited: %v", sn, err)
			continue
		}
		for _, s := range snaps {
			if s.Kind == "committed" || referenced[sn+"\x00"+s.Key] {
				continue
			}
			var owner, reason string
			switch {
			case isID(s.Key):
				owner, reason = s.Key, "rootfs snapshot of an ID with no containerd container"
			case strings.HasPrefix(s.Key, imageVolumeSnapshotPrefix):
				owner = strings.TrimPrefix(s.Key, imageVolumeSnapshotPrefix)
				if i := strings.IndexByte(owner, '-'); i > 0 {
					owner = owner[:i]
				}
				reason = "image-volume snapshot of a sandbox with no containerd container"
			default:
				continue // not made by us (e.g. an unpack in progress)
			}
			if _, ok := t.records[owner]; ok {
				continue
			}
			add(Finding{Kind: KindSnapshot, ID: owner, Path: sn + ":" + s.Key, snapshotter: sn,
				Reason: reason, Repairable: true, Young: d.young(s.Created)})
		}
	}
	recs, err := d.ctrd.SandboxRecords(ctx)
	if err != nil {
		warn("sandbox records not audited: %v", err)
	}
	for _, r := range recs {
		if _, live := t.records[r.ID]; live {
			continue
		}
		add(Finding{Kind: KindSandboxRecord, ID: r.ID, Path: r.ID, Reason: "containerd sandbox record of a sandbox with no containerd container",
			Repairable: true, Young: d.young(r.CreatedAt)})
	}
	ls, err := d.ctrd.Leases(ctx)
	if err != nil {
		warn("leases not audited: %v", err)
		return
	}
	for _, l := range ls {
		if sbID, ok := strings.CutPrefix(l.ID, imageVolumeLeasePrefix); ok {
			if _, live := t.records[sbID]; live {
				continue
			}
			add(Finding{Kind: KindLease, ID: sbID, Path: l.ID, Reason: "image-volume lease of a sandbox with no containerd container",
				Repairable: true, Young: d.young(l.CreatedAt)})
			continue
		}
		if _, expires := l.Labels[gcExpireLabel]; expires {
			continue // e.g. a pull's lease: containerd's GC drops it when it expires
		}
		add(Finding{Kind: KindLease, Path: l.ID, Reason: "lease without expiry not made by cri-containerd (report only)", Young: d.young(l.CreatedAt)})
	}
}

// isID reports whether s looks like a sandbox/container ID (64 hex digits).
func isID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (d *Doctor) netnsBase() string { return filepath.Join(d.opts.StateDir, "netns") }

func (d *Doctor) auditDirs(ctx context.Context, t *truth, add func(Finding), warn func(string, ...any)) {
	var mounts []Mount
	if d.host != nil {
		var err error
		if mounts, err = d.host.Mounts(); err != nil {
			warn("mounts not read: %v", err)
		}
	}
	mountsUnder := func(dir string) []Mount {
		var out []Mount
		for _, m := range mounts {
			if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
				out = append(out, m)
			}
		}
		return out
	}
	type base struct {
		dir     string
		sandbox bool
	}
	for _, b := range []base{
		{d.netnsBase(), true},
		{filepath.Join(d.opts.StateDir, "sandboxes"), true},
		{filepath.Join(d.opts.RootDir, "sandboxes"), true},
		{filepath.Join(d.opts.StateDir, "containers"), false},
		{filepath.Join(d.opts.RootDir, "containers"), false},
	} {
		entries, err := os.ReadDir(b.dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				warn("%s not audited: %v", b.dir, err)
			}
			continue
		}
		what := "container"
		if b.sandbox {
			what = "sandbox"
		}
		for _, e := range entries {
			id := e.Name()
			p := filepath.Join(b.dir, id)
			if _, ok := t.records[id]; ok {
				if !b.sandbox && b.dir == filepath.Join(d.opts.StateDir, "containers") {
					d.auditExecFIFOs(ctx, id, p, add)
				}
				continue
			}
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			young := d.young(fi.ModTime())
			ms := mountsUnder(p)
			if b.dir == d.netnsBase() {
				nsMounted := false
				for _, m := range ms {
					if m.FSType == "nsfs" {
						nsMounted = true
						add(Finding{Kind: KindNetNS, ID: id, Path: m.Mountpoint, Repairable: true, Young: young,
							Reason: "network namespace of a sandbox with no containerd container"})
					}
				}
				if nsMounted {
					continue
				}
			}
			reason := fmt.Sprintf("directory of a %s with no containerd container", what)
			if len(ms) > 0 {
				reason += fmt.Sprintf(" (%d mounts inside)", len(ms))
			}
			add(Finding{Kind: KindDir, ID: id, Path: p, Reason: reason, Repairable: true, Young: young})
			if !b.sandbox {
				for _, f := range fifosUnder(p) {
					add(Finding{Kind: KindFIFO, ID: id, Path: f, Reason: "FIFO of a container with no containerd container", Repairable: true, Young: young})
				}
			}
		}
	}
}

// fifosUnder lists the FIFOs in the tree at dir.
func fifosUnder(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type()&fs.ModeNamedPipe != 0 {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// auditExecFIFOs finds exec FIFO directories (<state>/containers/<id>/exec/exec-*)
// of a live container whose exec process no longer exists.
func (d *Doctor) auditExecFIFOs(ctx context.Context, id, dir string, add func(Finding)) {
	execDirs, _ := filepath.Glob(filepath.Join(dir, "exec", "exec-*"))
	for _, ed := range execDirs {
		fi, err := os.Stat(ed)
		if err != nil || d.young(fi.ModTime()) {
			continue
		}
		execID := ""
		for _, f := range fifosUnder(ed) {
			b := filepath.Base(f)
			for _, suf := range []string{"-stdout", "-stderr", "-stdin"} {
				if s, ok := strings.CutSuffix(b, suf); ok {
					execID = s
				}
			}
		}
		if execID == "" {
			add(Finding{Kind: KindFIFO, ID: id, Path: ed, Reason: "exec FIFO directory without FIFOs", Repairable: true})
			continue
		}
		exists, err := d.ctrd.ProcessExists(ctx, id, execID)
		if err != nil || exists {
			continue
		}
		add(Finding{Kind: KindFIFO, ID: id, Path: ed, Repairable: true,
			Reason: fmt.Sprintf("FIFOs of exec %s, which no longer exists in container %s", execID, short(id))})
	}
}

func (d *Doctor) auditNetwork(ctx context.Context, t *truth, rep *Report, add func(Finding), warn func(string, ...any)) {
	orphanIDs := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Kind == KindNetNS || (f.Kind == KindDir && strings.HasPrefix(f.Path, d.netnsBase()+"/")) {
			orphanIDs[f.ID] = true
		}
	}
	for _, n := range t.networks {
		for _, dir := range n.IPAMDirs {
			allocs, err := readIPAMDir(dir)
			if err != nil {
				warn("IP allocations in %s not audited: %v", dir, err)
				continue
			}
			for _, a := range allocs {
				if t.liveNetwork(a.ID) {
					continue
				}
				orphanIDs[a.ID] = true
				add(Finding{Kind: KindIPAM, ID: a.ID, Path: a.Path, network: n.Name, Repairable: true, Young: d.young(a.ModTime),
					Reason: fmt.Sprintf("IP %s on network %s: %s", a.IP, n.Name, t.networkReason(a.ID))})
			}
		}
	}
	cache, err := readCache(d.opts.CNICacheDir)
	if err != nil {
		warn("CNI cache %s not audited: %v", d.opts.CNICacheDir, err)
	}
	for _, c := range cache {
		if !t.netNames[c.NetworkName] || t.liveNetwork(c.ContainerID) {
			continue
		}
		orphanIDs[c.ContainerID] = true
		add(Finding{Kind: KindCNICache, ID: c.ContainerID, Path: c.Path, network: c.NetworkName, Repairable: true, Young: d.young(c.ModTime),
			Reason: fmt.Sprintf("ADD arguments of network %s kept until a DEL that never succeeded: %s", c.NetworkName, t.networkReason(c.ContainerID))})
	}
	if d.ipt != nil {
		for _, v6 := range []bool{false, true} {
			lines, err := d.ipt.Rules(ctx, v6, "nat")
			if err != nil {
				if !v6 {
					warn("CNI iptables chains not audited: %v", err)
				}
				continue
			}
			tbl := parseIPTables(v6, "nat", lines)
			seen := map[string]bool{}
			for chain, o := range chainOwners(tbl, t.netNames) {
				if t.liveNetwork(o[1]) {
					continue
				}
				seen[chain] = true
				orphanIDs[o[1]] = true
				add(Finding{Kind: KindIPTables, ID: o[1], Path: chainPath(v6, chain), network: o[0], Repairable: true,
					Reason: fmt.Sprintf("chain of network %s: %s", o[0], t.networkReason(o[1]))})
			}
			for id := range orphanIDs {
				if t.liveNetwork(id) {
					continue
				}
				for name := range t.netNames {
					for _, prefix := range []string{"", "DN-"} {
						c := cniChainName(name, id, prefix)
						if tbl.Chains[c] && !seen[c] {
							seen[c] = true
							add(Finding{Kind: KindIPTables, ID: id, Path: chainPath(v6, c), network: name, Repairable: true,
								Reason: fmt.Sprintf("chain of network %s: %s", name, t.networkReason(id))})
						}
					}
				}
			}
		}
	}
	// go-cni's loopback network is cached for every pod that ran the loopback
	// plugin (made before lo was brought up in-process): only ours count.
	for _, c := range cache {
		if c.NetworkName != loopbackNetwork || !orphanIDs[c.ContainerID] || t.liveNetwork(c.ContainerID) {
			continue
		}
		add(Finding{Kind: KindCNICache, ID: c.ContainerID, Path: c.Path, network: c.NetworkName, Repairable: true, Young: d.young(c.ModTime),
			Reason: "loopback ADD arguments of an orphaned sandbox"})
	}
}

func chainPath(v6 bool, chain string) string {
	if v6 {
		return "ip6tables nat " + chain
	}
	return "iptables nat " + chain
}

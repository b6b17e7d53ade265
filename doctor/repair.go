package doctor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/cni"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// ResultOwned: by the time of the repair a containerd container of that ID
// exists, so the object is the daemon's again and was left alone.
const ResultOwned = "owned now (left alone)"

// Repair removes the repairable, not young findings of rep, in an order
// that loses nothing: tasks and shims; then per orphaned sandbox CNI DEL
// with the arguments stored at ADD (libcni's result cache; the current
// config and the pod ID when none are stored), the netns, and only then
// whatever DEL could not release (IP files, iptables chains, cache
// entries); then directories and FIFOs, snapshots and leases. Before
// touching anything it re-reads containerd, and leaves alone any ID that
// has a container record by then. Each finding's Result says what happened;
// running Repair again finds nothing to do.
func (d *Doctor) Repair(ctx context.Context, rep *Report) error {
	rep.Repaired = true
	t, _, err := d.load(ctx)
	if err != nil {
		return err
	}
	nets, _ := loadNetworks(d.opts.CNIConfDir)
	t.networks = nets
	for _, n := range nets {
		t.netNames[n.Name] = true
	}
	todo := func(f *Finding) bool { return f.Repairable && !f.Young && f.Result == "" }
	owned := func(f *Finding) bool {
		if f.ID == "" {
			return false
		}
		switch f.Kind {
		case KindIPAM, KindCNICache, KindIPTables:
			return t.liveNetwork(f.ID)
		}
		_, ok := t.records[f.ID]
		return ok
	}
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if todo(f) && owned(f) {
			f.Result = ResultOwned
		}
	}
	set := func(f *Finding, err error) {
		if err != nil {
			f.Result = "failed: " + err.Error()
			klog.ErrorS(err, "Repair failed", "kind", f.Kind, "id", f.ID, "path", f.Path)
			return
		}
		if f.Result == "" {
			f.Result = ResultRemoved
		}
		klog.V(2).InfoS("Repaired", "kind", f.Kind, "id", f.ID, "path", f.Path, "result", f.Result)
	}

	// 1. Tasks and shims.
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if !todo(f) {
			continue
		}
		switch f.Kind {
		case KindTask:
			set(f, d.ctrd.DeleteTask(ctx, f.ID))
		case KindShim:
			set(f, d.killShim(ctx, f))
		}
	}

	// 2. Network, per orphaned ID.
	groups := map[string][]*Finding{}
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if !todo(f) {
			continue
		}
		switch f.Kind {
		case KindNetNS, KindIPAM, KindCNICache, KindIPTables:
			groups[f.ID] = append(groups[f.ID], f)
		case KindDir:
			if strings.HasPrefix(f.Path, d.netnsBase()+"/") {
				groups[f.ID] = append(groups[f.ID], f)
			}
		}
	}
	ids := make([]string, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d.repairNetwork(ctx, t, id, groups[id], set)
	}

	// 3. Directories and FIFOs (FIFOs first: a dir removal covers its FIFOs).
	for _, k := range []Kind{KindFIFO, KindDir} {
		for i := range rep.Findings {
			f := &rep.Findings[i]
			if todo(f) && f.Kind == k {
				set(f, d.removeTree(f))
			}
		}
	}

	// 4. Snapshots, then leases and sandbox records.
	for _, k := range []Kind{KindSnapshot, KindLease, KindSandboxRecord} {
		for i := range rep.Findings {
			f := &rep.Findings[i]
			if !todo(f) || f.Kind != k {
				continue
			}
			switch k {
			case KindSnapshot:
				set(f, d.ctrd.RemoveSnapshot(ctx, f.snapshotter, strings.TrimPrefix(f.Path, f.snapshotter+":")))
			case KindLease:
				set(f, d.ctrd.DeleteLease(ctx, f.Path))
			default:
				set(f, d.ctrd.DeleteSandboxRecord(ctx, f.Path))
			}
		}
	}
	return nil
}

// killShim deletes the shim's task through containerd if it still knows it,
// then kills the shim's children and the shim.
func (d *Doctor) killShim(ctx context.Context, f *Finding) error {
	if err := d.ctrd.DeleteTask(ctx, f.ID); err != nil {
		klog.V(2).InfoS("Deleting the task of an orphaned shim", "id", f.ID, "err", err)
	}
	shims, err := d.host.Shims()
	if err != nil {
		return err
	}
	for _, s := range shims {
		if s.Pid != f.pid || s.ID != f.ID {
			continue
		}
		for _, c := range s.Children {
			if err := d.host.Kill(c); err != nil {
				return err
			}
		}
		return d.host.Kill(s.Pid)
	}
	f.Result = ResultGone
	return nil
}

// removeTree unmounts everything under the finding's path and removes it.
func (d *Doctor) removeTree(f *Finding) error {
	if _, err := os.Lstat(f.Path); errors.Is(err, os.ErrNotExist) {
		f.Result = ResultGone
		return nil
	}
	if err := d.unmountUnder(f.Path); err != nil {
		return err
	}
	if err := os.RemoveAll(f.Path); err != nil {
		return fmt.Errorf("removing %s: %w", f.Path, err)
	}
	return nil
}

// unmountUnder unmounts every mount at or under dir, deepest first.
func (d *Doctor) unmountUnder(dir string) error {
	if d.host == nil {
		return nil
	}
	ms, err := d.host.Mounts()
	if err != nil {
		return err
	}
	var under []string
	for _, m := range ms {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			under = append(under, m.Mountpoint)
		}
	}
	sort.Slice(under, func(i, j int) bool { return len(under[i]) > len(under[j]) })
	for _, m := range under {
		if err := d.host.Unmount(m); err != nil {
			return err
		}
	}
	return nil
}

func (d *Doctor) mounted(path string) bool {
	if d.host == nil {
		return false
	}
	ms, err := d.host.Mounts()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.Mountpoint == path {
			return true
		}
	}
	return false
}

// repairNetwork tears down the network of one orphaned ID: CNI DEL (stored
// arguments first), netns, then whatever DEL left.
func (d *Doctor) repairNetwork(ctx context.Context, t *truth, id string, fs []*Finding, set func(*Finding, error)) {
	netnsPath := ""
	for _, f := range fs {
		if f.Kind == KindNetNS && d.mounted(f.Path) {
			netnsPath = f.Path
		}
	}
	// CNI DEL for every attachment of this ID: with the stored ADD
	// arguments where libcni kept them, else with the current config.
	cache, _ := readCache(d.opts.CNICacheDir)
	delDone := map[string]bool{}
	var delErrs []string
	for _, c := range cache {
		if c.ContainerID != id || !(t.netNames[c.NetworkName] || c.NetworkName == loopbackNetwork) {
			continue
		}
		err := d.cni.Del(ctx, DelRequest{Network: c.NetworkName, Config: c.Config, ContainerID: id, IfName: c.IfName,
			NetNS: netnsPath, Args: c.CniArgs, CapabilityArgs: c.CapabilityArgs})
		if err != nil {
			delErrs = append(delErrs, err.Error())
			continue
		}
		delDone[c.NetworkName] = true
	}
	for _, n := range t.networks {
		if delDone[n.Name] || !groupHasNetwork(fs, n.Name) {
			continue
		}
		ifname := "eth0"
		for _, f := range fs {
			if f.Kind == KindIPAM && f.network == n.Name {
				if b, err := os.ReadFile(f.Path); err == nil {
					if _, ifn := parseIPAMFile(b); ifn != "" {
						ifname = ifn
					}
				}
			}
		}
		req := DelRequest{Network: n.Name, Config: n.Bytes, ContainerID: id, IfName: ifname, NetNS: netnsPath,
			Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_INFRA_CONTAINER_ID", id}}}
		if md, ok := t.sandboxes[id]; ok {
			// A sandbox whose network was torn down but left this: its
			// metadata holds the arguments of its ADD.
			req.Args, req.CapabilityArgs = metadataDelArgs(md)
		}
		err := d.cni.Del(ctx, req)
		if err != nil {
			delErrs = append(delErrs, err.Error())
		}
	}
	if len(delErrs) > 0 {
		klog.InfoS("CNI DEL failed; releasing what it left directly", "id", id, "errors", delErrs)
	}

	// The netns, then the leftovers.
	var tbls map[bool]iptTable
	for _, f := range fs {
		switch f.Kind {
		case KindNetNS:
			if !d.mounted(f.Path) {
				if _, err := os.Lstat(f.Path); errors.Is(err, os.ErrNotExist) {
					f.Result = ResultGone
				}
			}
			err := d.host.Unmount(f.Path)
			if err == nil {
				err = removeAllIgnoringMissing(filepath.Dir(f.Path))
			}
			set(f, err)
		case KindDir:
			set(f, d.removeTree(f))
		case KindIPAM:
			set(f, releaseIPAM(f))
		case KindCNICache:
			err := os.Remove(f.Path)
			if errors.Is(err, os.ErrNotExist) {
				err = nil
				if delDone[f.network] {
					f.Result = ResultRemoved // DEL removed it
				}
			}
			set(f, err)
		case KindIPTables:
			if tbls == nil {
				tbls = d.readTables(ctx)
			}
			set(f, d.removeChain(ctx, tbls, f))
		}
	}
}

func groupHasNetwork(fs []*Finding, name string) bool {
	for _, f := range fs {
		if f.network == name && (f.Kind == KindIPAM || f.Kind == KindIPTables) {
			return true
		}
	}
	return false
}

func removeAllIgnoringMissing(p string) error {
	if err := os.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// releaseIPAM removes a host-local allocation file under host-local's own
// lock, if it still names the same container (DEL may have released it).
func releaseIPAM(f *Finding) error {
	dir := filepath.Dir(f.Path)
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err == nil {
		defer lock.Close()
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err == nil {
			defer unix.Flock(int(lock.Fd()), unix.LOCK_UN) //nolint:errcheck
		}
	}
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // released by DEL
	}
	if err != nil {
		return err
	}
	if id, _ := parseIPAMFile(b); id != f.ID {
		return nil // released and given to another pod meanwhile
	}
	if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (d *Doctor) readTables(ctx context.Context) map[bool]iptTable {
	out := map[bool]iptTable{}
	for _, v6 := range []bool{false, true} {
		lines, err := d.ipt.Rules(ctx, v6, "nat")
		if err != nil {
			continue
		}
		out[v6] = parseIPTables(v6, "nat", lines)
	}
	return out
}

// removeChain deletes the rules that jump to the chain or carry the pod's
// CNI comment, then flushes and deletes the chain.
func (d *Doctor) removeChain(ctx context.Context, tbls map[bool]iptTable, f *Finding) error {
	v6 := strings.HasPrefix(f.Path, "ip6tables ")
	chain := f.Path[strings.LastIndexByte(f.Path, ' ')+1:]
	tbl, ok := tbls[v6]
	if !ok {
		return fmt.Errorf("cannot read the nat table")
	}
	if !tbl.Chains[chain] {
		f.Result = ResultGone // CNI DEL removed it
		return nil
	}
	for _, r := range tbl.Rules {
		n, id, ok := commentOwner(r.Comment)
		owned := ok && n == f.network && id == f.ID
		if r.Target != chain && !(owned && r.Chain != chain) {
			continue
		}
		if err := d.ipt.Run(ctx, v6, append([]string{"-t", "nat", "-D", r.Chain}, r.Args...)...); err != nil && !strings.Contains(err.Error(), "does not exist") && !strings.Contains(err.Error(), "Bad rule") {
			return err
		}
	}
	if err := d.ipt.Run(ctx, v6, "-t", "nat", "-F", chain); err != nil && !strings.Contains(err.Error(), "No chain") {
		return err
	}
	if err := d.ipt.Run(ctx, v6, "-t", "nat", "-X", chain); err != nil && !strings.Contains(err.Error(), "No chain") {
		return err
	}
	return nil
}

// metadataDelArgs rebuilds the CNI arguments and capabilities of a
// sandbox's ADD from its metadata (as cni.PodOptions made them).
func metadataDelArgs(md *sandbox.Metadata) ([][2]string, map[string]any) {
	m := md.Config.GetMetadata()
	args := [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", m.GetNamespace()},
		{"K8S_POD_NAME", m.GetName()},
		{"K8S_POD_INFRA_CONTAINER_ID", md.ID},
		{"K8S_POD_UID", m.GetUid()},
	}
	caps := map[string]any{cni.PodAnnotationsCapability: md.Config.GetAnnotations()}
	var pms []map[string]any
	for _, pm := range cni.PortMappings(md.Config.GetPortMappings()) {
		pms = append(pms, map[string]any{"hostPort": pm.HostPort, "containerPort": pm.ContainerPort, "protocol": pm.Protocol, "hostIP": pm.HostIP})
	}
	if len(pms) > 0 {
		caps["portMappings"] = pms
	}
	return args, caps
}

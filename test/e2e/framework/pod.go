package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ---------------------------------------------------------------------------
// Pod configs

// PodOption changes a pod sandbox config built by PodConfig.
type PodOption func(*runtimeapi.PodSandboxConfig)

// PodConfig returns a kubelet-like pod sandbox config named name in the
// namespace "cri-e2e" with a fresh random UID, attempt 0.
func PodConfig(name string, opts ...PodOption) *runtimeapi.PodSandboxConfig {
	uid := "uid-" + RandomSuffix() + RandomSuffix()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{
			Name:      name,
			Namespace: "cri-e2e",
			Uid:       uid,
			Attempt:   0,
		},
		Hostname: name,
		Labels: map[string]string{
			"io.kubernetes.pod.name":      name,
			"io.kubernetes.pod.namespace": "cri-e2e",
			"io.kubernetes.pod.uid":       uid,
		},
		Annotations: map[string]string{"cri-e2e/test": "sandbox"},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: runtimeapi.NamespaceMode_POD,
					Pid:     runtimeapi.NamespaceMode_POD,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

// WithHostNetwork puts the pod in the node's network namespace.
func WithHostNetwork() PodOption {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	}
}

// WithPortMapping adds a TCP hostPort -> containerPort mapping.
func WithPortMapping(hostPort, containerPort int32) PodOption {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{
			Protocol: runtimeapi.Protocol_TCP, HostPort: hostPort, ContainerPort: containerPort,
		})
	}
}

// WithAttempt sets the metadata attempt.
func WithAttempt(a uint32) PodOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Metadata.Attempt = a }
}

// WithLogDirectory sets the pod log directory (needed for container logs).
func WithLogDirectory(dir string) PodOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.LogDirectory = dir }
}

// ---------------------------------------------------------------------------
// Pod RPC helpers

// RPCContext is a context for one CRI call.
func RPCContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// PodInfo is the verbose PodSandboxStatus info ("info" key) of cri-containerd.
type PodInfo struct {
	Pid                uint32 `json:"pid"`
	State              string `json:"state"`
	Phase              string `json:"phase"`
	NetNamespacePath   string `json:"netNamespacePath"`
	NetNamespaceClosed bool   `json:"netNamespaceClosed"`
	RuntimeHandler     string `json:"runtimeHandler"`
	RuntimeType        string `json:"runtimeType"`
	Image              string `json:"image"`
}

// PodStatus returns the verbose status of a sandbox and its parsed info.
func PodStatus(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) (*runtimeapi.PodSandboxStatus, PodInfo) {
	t.Helper()
	resp, err := rc.PodSandboxStatus(RPCContext(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus(%s): %v", id, err)
	}
	var info PodInfo
	if raw := resp.GetInfo()["info"]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &info); err != nil {
			t.Fatalf("PodSandboxStatus(%s) verbose info %q: %v", id, raw, err)
		}
	} else {
		t.Fatalf("PodSandboxStatus(%s): no verbose info (got keys %v)", id, resp.GetInfo())
	}
	return resp.GetStatus(), info
}

// ListedPodState returns the state ListPodSandbox reports for id, and whether it is listed.
func ListedPodState(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string) (runtimeapi.PodSandboxState, bool) {
	t.Helper()
	resp, err := rc.ListPodSandbox(RPCContext(t), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: id}})
	if err != nil {
		t.Fatalf("ListPodSandbox(id=%s): %v", id, err)
	}
	for _, p := range resp.GetItems() {
		if p.GetId() == id {
			return p.GetState(), true
		}
	}
	return 0, false
}

// WaitPodState polls ListPodSandbox (a read-only call) until id reports
// state; it returns how long that took, and fails the test on timeout.
func WaitPodState(t testing.TB, rc runtimeapi.RuntimeServiceClient, id string, state runtimeapi.PodSandboxState, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, ok := ListedPodState(t, rc, id)
		if ok && got == state {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("sandbox %s: state %v (listed %v) after %s, want %v", id, got, ok, timeout, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ListPodIDs lists every sandbox ID the daemon reports.
func ListPodIDs(t testing.TB, rc runtimeapi.RuntimeServiceClient) []string {
	t.Helper()
	resp, err := rc.ListPodSandbox(RPCContext(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	var ids []string
	for _, p := range resp.GetItems() {
		ids = append(ids, p.GetId())
	}
	return ids
}

// StopAndRemovePods stops and removes every sandbox the daemon lists (best
// effort, errors are logged).
func StopAndRemovePods(t testing.TB, rc runtimeapi.RuntimeServiceClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Logf("cleanup: ListPodSandbox: %v", err)
		return
	}
	for _, p := range resp.GetItems() {
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			t.Logf("cleanup: StopPodSandbox(%s): %v", p.GetId(), err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			t.Logf("cleanup: RemovePodSandbox(%s): %v", p.GetId(), err)
		}
	}
}

// ---------------------------------------------------------------------------
// Daemon paths and process

// RootDir is the daemon's --root-dir.
func (d *Daemon) RootDir() string { return filepath.Join(d.Dir, "root") }

// StateDir is the daemon's --state-dir.
func (d *Daemon) StateDir() string { return filepath.Join(d.Dir, "state") }

// KillDaemon sends SIGKILL to the daemon process (no cleanup of any kind
// runs) and waits until it has exited. d.Start (or d.Restart) starts it again.
func KillDaemon(t testing.TB, d *Daemon) {
	t.Helper()
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.mu.Unlock()
	if cmd == nil {
		t.Fatal("KillDaemon: daemon not running")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("KillDaemon: %v", err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("KillDaemon: daemon did not exit after SIGKILL")
	}
}

// ---------------------------------------------------------------------------
// Leak checks

// MountsUnder lists the mount points at or under dir (from /proc/self/mountinfo).
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatalf("reading mountinfo: %v", err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	slices.Sort(out)
	return out
}

// NetNSMounts lists the network namespace (nsfs) mounts at or under dir.
func NetNSMounts(t testing.TB, dir string) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		skip, stop := mountinfo.PrefixFilter(dir)(m)
		return skip || m.FSType != "nsfs", stop
	})
	if err != nil {
		t.Fatalf("reading mountinfo: %v", err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	slices.Sort(out)
	return out
}

// IPAMDataDir returns the host-local dataDir of the first CNI config in
// confDir that names one, else $CNI_IPAM_DIR, else host-local's default.
func IPAMDataDir(t testing.TB, confDir string) string {
	t.Helper()
	entries, _ := os.ReadDir(confDir)
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
		default:
			continue
		}
		b, err := os.ReadFile(filepath.Join(confDir, e.Name()))
		if err != nil {
			continue
		}
		var c struct {
			IPAM    struct{ DataDir string } `json:"ipam"`
			Plugins []struct {
				IPAM struct {
					Type    string `json:"type"`
					DataDir string `json:"dataDir"`
				} `json:"ipam"`
			} `json:"plugins"`
		}
		if json.Unmarshal(b, &c) != nil {
			continue
		}
		if c.IPAM.DataDir != "" {
			return c.IPAM.DataDir
		}
		for _, p := range c.Plugins {
			if p.IPAM.DataDir != "" {
				return p.IPAM.DataDir
			}
		}
	}
	if v := os.Getenv("CNI_IPAM_DIR"); v != "" {
		return v
	}
	return "/var/lib/cni/networks"
}

// IPAMFilesFor lists the host-local allocation files under ipamDir (any
// network) whose first line (the container ID) is one of ids.
func IPAMFilesFor(t testing.TB, ipamDir string, ids ...string) []string {
	t.Helper()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []string
	err := filepath.WalkDir(ipamDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		if n := e.Name(); n == "lock" || strings.HasPrefix(n, "last_reserved_ip") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil // released concurrently
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		if sc.Scan() && want[strings.TrimSpace(sc.Text())] {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", ipamDir, err)
	}
	return out
}

// CtrClient connects to containerd in namespace ns; it is closed when the test ends.
func CtrClient(t testing.TB, address, ns string) *containerd.Client {
	t.Helper()
	cli, err := containerd.New(address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// ContainerdContainers lists the IDs of every containerd container in ns.
func ContainerdContainers(t testing.TB, address, ns string) []string {
	t.Helper()
	cli := CtrClient(t, address, ns)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	cs, err := cli.Containers(ctx)
	if err != nil {
		t.Fatalf("listing containers in %s: %v", ns, err)
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID())
	}
	return ids
}

// ContainerdSandboxRecords lists the IDs of containerd's sandbox records
// in namespace ns (none on a containerd without them).
func ContainerdSandboxRecords(t testing.TB, address, ns string) []string {
	t.Helper()
	cli := CtrClient(t, address, ns)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	rs, err := cli.SandboxStore().List(ctx)
	if errdefs.IsNotImplemented(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("listing sandbox records in %s: %v", ns, err)
	}
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

// SnapshotCounts summarises the snapshots of one snapshotter in a namespace.
type SnapshotCounts struct {
	Committed int      // image layers
	Active    []string // keys of active (writable) snapshots
	View      []string // keys of view snapshots
}

// Snapshots walks the snapshots of snapshotter ("" = overlayfs) in ns.
func Snapshots(t testing.TB, address, ns, snapshotter string) SnapshotCounts {
	t.Helper()
	if snapshotter == "" {
		snapshotter = "overlayfs"
	}
	cli := CtrClient(t, address, ns)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	var c SnapshotCounts
	err := cli.SnapshotService(snapshotter).Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		switch i.Kind {
		case snapshots.KindCommitted:
			c.Committed++
		case snapshots.KindActive:
			c.Active = append(c.Active, i.Name)
		case snapshots.KindView:
			c.View = append(c.View, i.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s snapshots in %s: %v", snapshotter, ns, err)
	}
	return c
}

// PathsNaming lists the files and directories under the bases (recursively)
// whose name contains one of ids.
func PathsNaming(t testing.TB, ids []string, bases ...string) []string {
	t.Helper()
	var out []string
	for _, base := range bases {
		err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			for _, id := range ids {
				if strings.Contains(e.Name(), id) {
					out = append(out, p)
					if e.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walking %s: %v", base, err)
		}
	}
	return out
}

// DirEntries lists the names in dir ("" entries when it does not exist).
func DirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading %s: %v", dir, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// IptablesRulesFor lists the iptables and nftables rules (as printed by
// iptables-save / nft list ruleset) that mention one of ids (portmap tags
// its rules with the container ID). Tools that are missing are skipped.
func IptablesRulesFor(t testing.TB, ids ...string) []string {
	t.Helper()
	var out []string
	for _, cmd := range [][]string{{"iptables-save"}, {"nft", "list", "ruleset"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		b, err := exec.Command(cmd[0], cmd[1:]...).Output()
		if err != nil {
			t.Logf("%s: %v", strings.Join(cmd, " "), err)
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			for _, id := range ids {
				if strings.Contains(l, id) {
					out = append(out, cmd[0]+": "+strings.TrimSpace(l))
				}
			}
		}
	}
	return out
}

// SandboxLeaks checks that nothing of the sandboxes ids remains, and returns
// one line per leak: netns mounts and any other mounts under the daemon's
// state and root dirs, host-local IP files in ipamDir, containerd containers
// and active/view snapshots in the daemon's namespace, files or directories
// named after an ID under the root/state dirs, and iptables/nft rules naming
// an ID (portmap's DNAT, the bridge plugin's masquerade). With
// wholeNamespace, any containerd container and any non-committed snapshot in
// the namespace counts (the namespace must then hold no other pod).
func SandboxLeaks(t testing.TB, d *Daemon, ipamDir string, ids []string, wholeNamespace bool) []string {
	t.Helper()
	var leaks []string
	add := func(what string, items []string) {
		if len(items) > 0 {
			max := items
			if len(max) > 10 {
				max = append(slices.Clone(max[:10]), fmt.Sprintf("... (%d in all)", len(items)))
			}
			leaks = append(leaks, fmt.Sprintf("%s (%d): %s", what, len(items), strings.Join(max, ", ")))
		}
	}
	add("netns mounts under the state dir", NetNSMounts(t, d.StateDir()))
	var other []string
	for _, dir := range []string{d.StateDir(), d.RootDir()} {
		for _, m := range MountsUnder(t, dir) {
			if m != d.StateDir() && m != d.RootDir() {
				other = append(other, m)
			}
		}
	}
	add("mounts under the root/state dirs", other)
	if ipamDir != "" && len(ids) > 0 {
		add("host-local IP allocations", IPAMFilesFor(t, ipamDir, ids...))
	}
	ctrs := ContainerdContainers(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	recs := ContainerdSandboxRecords(t, d.Env.ContainerdAddress, d.Opts.Namespace)
	snaps := Snapshots(t, d.Env.ContainerdAddress, d.Opts.Namespace, "")
	if !wholeNamespace {
		keep := func(list []string) []string {
			var out []string
			for _, s := range list {
				for _, id := range ids {
					if strings.Contains(s, id) {
						out = append(out, s)
						break
					}
				}
			}
			return out
		}
		ctrs, recs, snaps.Active, snaps.View = keep(ctrs), keep(recs), keep(snaps.Active), keep(snaps.View)
	}
	add("containerd containers", ctrs)
	add("containerd sandbox records", recs)
	add("active snapshots", snaps.Active)
	add("view snapshots", snaps.View)
	if len(ids) > 0 {
		add("paths named after a sandbox ID", PathsNaming(t, ids, d.RootDir(), d.StateDir()))
		add("iptables/nft rules naming a sandbox ID (portmap, bridge ipMasq)", IptablesRulesFor(t, ids...))
	}
	return leaks
}

// UnmountUnder lazily unmounts every mount under dir (deepest first); for
// test cleanup, so that a leaked netns does not pin the temp directory.
func UnmountUnder(t testing.TB, dir string) {
	ms := MountsUnder(t, dir)
	slices.Reverse(ms)
	for _, m := range ms {
		if m == dir {
			continue
		}
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmounting %s: %v", m, err)
		}
	}
}

// ---------------------------------------------------------------------------
// Network helpers

// FreeTCPPort returns a TCP port in [lo, hi) that nothing listens on.
func FreeTCPPort(t testing.TB, lo, hi int) int {
	t.Helper()
	start := lo + int(time.Now().UnixNano()%int64(hi-lo))
	for i := 0; i < hi-lo; i++ {
		p := lo + (start-lo+i)%(hi-lo)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		_ = l.Close()
		return p
	}
	t.Fatalf("no free TCP port in [%d, %d)", lo, hi)
	return 0
}

// ListenInNetNS opens a listener inside the network namespace mounted at
// nsPath (the socket stays in that namespace); it is closed when the test ends.
func ListenInNetNS(t testing.TB, nsPath, network, addr string) net.Listener {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is only returned to the scheduler when it is back in
		// its own namespace; otherwise it dies with this goroutine.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		l, lerr := net.Listen(network, addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{l, lerr}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listening on %s in %s: %v", addr, nsPath, r.err)
	}
	t.Cleanup(func() { _ = r.l.Close() })
	return r.l
}

// HostIPv4 returns a non-loopback IPv4 address of the host that is not on
// one of the excluded interfaces (e.g. the CNI bridge), or "".
func HostIPv4(exclude ...string) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 || slices.Contains(exclude, i.Name) ||
			strings.HasPrefix(i.Name, "veth") || strings.HasPrefix(i.Name, "cni") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return ""
}

// RemoveIptablesRulesFor deletes the iptables rules whose comment names one
// of ids (CNI portmap/bridge rules leaked by a failed test), and the CNI-*
// chains they jump to when every rule of such a chain names one of ids. Test
// cleanup only: never call it for IDs the test did not create.
func RemoveIptablesRulesFor(t testing.TB, ids ...string) {
	if _, err := exec.LookPath("iptables-save"); err != nil || len(ids) == 0 {
		return
	}
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Logf("cleanup: iptables-save: %v", err)
		return
	}
	mentions := func(l string) bool {
		for _, id := range ids {
			if strings.Contains(l, id) {
				return true
			}
		}
		return false
	}
	type table struct {
		dels   []string
		chains map[string]bool // CNI chains only our rules use (so far)
		other  map[string]bool // CNI chains with a rule that names another ID
	}
	tables := map[string]*table{}
	var order []string
	var cur *table
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, "*"):
			cur = &table{chains: map[string]bool{}, other: map[string]bool{}}
			tables[l[1:]] = cur
			order = append(order, l[1:])
		case strings.HasPrefix(l, "-A ") && cur != nil:
			f := strings.Fields(l)
			chain := f[1]
			if mentions(l) {
				cur.dels = append(cur.dels, "-D"+l[2:])
				for i := 0; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && strings.HasPrefix(f[i+1], "CNI-") {
						cur.chains[f[i+1]] = true
					}
				}
			} else if strings.HasPrefix(chain, "CNI-") {
				cur.other[chain] = true
			}
		}
	}
	for _, name := range order {
		tb := tables[name]
		if len(tb.dels) == 0 {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "*%s\n", name)
		for _, d := range tb.dels {
			b.WriteString(d + "\n")
		}
		for c := range tb.chains {
			if !tb.other[c] {
				fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
			}
		}
		b.WriteString("COMMIT\n")
		cmd := exec.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(b.String())
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Logf("cleanup: iptables-restore (%s) failed: %v: %s\ninput:\n%s", name, err, o, b.String())
		} else {
			t.Logf("cleanup: removed %d leaked iptables rule(s) in table %s", len(tb.dels), name)
		}
	}
}

package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/sandbox"
)

func mkfifo(p string) error { return unix.Mkfifo(p, 0o600) }

// kinds summarises findings as "kind id-prefix" strings.
func kinds(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Kind)+" "+short(f.ID))
	}
	slices.Sort(out)
	return out
}

func audit(t *testing.T, d *Doctor) *Report {
	t.Helper()
	rep, err := d.Audit(context.Background())
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return rep
}

func TestAudit(t *testing.T) {
	a, b, c := testID('a'), testID('b'), testID('c')
	for _, tc := range []struct {
		name    string
		setup   func(n *node)
		want    []string // "kind id12"
		orphans int
		check   func(t *testing.T, rep *Report)
	}{
		{
			name: "a live pod is clean",
			setup: func(n *node) {
				n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated})
				n.addPodNetwork(a, "10.99.0.2")
				n.addContainerRecord(b, a)
				n.addContainerDirs(b, b+"-stdout", b+"-stderr")
				n.ctrd.tasks = []Task{{ID: a, Pid: 100}, {ID: b, Pid: 101}}
				n.host.shims = []Shim{{Pid: 99, Namespace: "ours", ID: a, Address: "/run/containerd/containerd.sock", Children: []int{100, 101}}}
				n.ctrd.snapshots["overlayfs"] = []Snapshot{{Key: a, Kind: "active"}, {Key: b, Kind: "active"}, {Key: "sha256:x", Kind: "committed"}}
			},
			orphans: 0,
		},
		{
			name: "a sandbox whose containerd record is gone leaves netns, dirs, IP, cache and chains",
			setup: func(n *node) {
				n.addPodNetwork(a, "10.99.0.2")
			},
			want: []string{
				"cni-cache " + a[:12], "cni-cache " + a[:12], // its network and the loopback
				"dir " + a[:12], "dir " + a[:12],
				"ipam " + a[:12],
				"iptables " + a[:12], "iptables " + a[:12],
				"netns " + a[:12],
			},
			orphans: 8,
			check: func(t *testing.T, rep *Report) {
				for _, f := range rep.Findings {
					if f.Kind == KindIPAM && !strings.Contains(f.Reason, "10.99.0.2") {
						t.Errorf("IPAM finding does not name the IP: %+v", f)
					}
				}
			},
		},
		{
			name: "undecodable sandbox metadata is reported, never repaired, and its files stay its own",
			setup: func(n *node) {
				n.addSandboxRecord(a, nil)
				n.addPodNetwork(a, "10.99.0.2")
			},
			want:    []string{"container " + a[:12]},
			orphans: 1,
			check: func(t *testing.T, rep *Report) {
				if rep.Findings[0].Repairable || !strings.Contains(rep.Findings[0].Reason, "cannot be decoded") {
					t.Errorf("finding = %+v, want a report-only decode finding", rep.Findings[0])
				}
			},
		},
		{
			name: "an IP of a sandbox whose network was torn down is orphaned, its dirs are not",
			setup: func(n *node) {
				n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated, NetworkTornDown: true})
				n.addPodNetwork(a, "10.99.0.2")
			},
			// the loopback entry counts because the ID is orphaned elsewhere (its IP)
			want:    []string{"cni-cache " + a[:12], "cni-cache " + a[:12], "ipam " + a[:12], "iptables " + a[:12], "iptables " + a[:12]},
			orphans: 5,
			check: func(t *testing.T, rep *Report) {
				for _, f := range rep.Findings {
					if f.Kind == KindIPAM && !strings.Contains(f.Reason, "torn down") {
						t.Errorf("reason %q does not say the network was torn down", f.Reason)
					}
				}
			},
		},
		{
			name: "network objects of a container in another namespace are not ours to judge",
			setup: func(n *node) {
				n.addPodNetwork(a, "10.99.0.2")
				n.ctrd.otherNS = map[string]string{a: "someone-else"}
			},
			// the netns and dirs are under our state dir with no record in our namespace
			want:    []string{"dir " + a[:12], "dir " + a[:12], "netns " + a[:12]},
			orphans: 3,
		},
		{
			name: "young objects are listed but neither counted nor repaired",
			setup: func(n *node) {
				n.addPodNetwork(a, "10.99.0.2")
				n.now = time.Now()
			},
			orphans: 0,
			check: func(t *testing.T, rep *Report) {
				if len(rep.Findings) == 0 {
					t.Fatal("no findings")
				}
				for _, f := range rep.Findings {
					if !f.Young {
						t.Errorf("finding not young: %+v", f)
					}
				}
			},
		},
		{
			name: "directories and FIFOs of a container without a record",
			setup: func(n *node) {
				n.addContainerDirs(c, c+"-stdout", c+"-stderr")
			},
			want:    []string{"dir " + c[:12], "dir " + c[:12], "fifo " + c[:12], "fifo " + c[:12]},
			orphans: 4,
		},
		{
			name: "exec FIFOs of a finished exec in a live container",
			setup: func(n *node) {
				n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated})
				n.addContainerRecord(b, a)
				for _, e := range []string{"exec-1", "exec-2"} {
					d := filepath.Join(n.state, "containers", b, "exec", e)
					must(t, os.MkdirAll(d, 0o700))
					must(t, mkfifo(filepath.Join(d, e+"id-stdout")))
				}
				n.ctrd.execs[b+"/exec-2id"] = true
			},
			want:    []string{"fifo " + b[:12]},
			orphans: 1,
			check: func(t *testing.T, rep *Report) {
				if !strings.HasSuffix(rep.Findings[0].Path, "exec-1") {
					t.Errorf("finding %+v, want exec-1", rep.Findings[0])
				}
			},
		},
		{
			name: "containerd leftovers: task, shims, snapshots, leases, a container of a removed sandbox, a foreign container",
			setup: func(n *node) {
				n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated})
				n.addContainerRecord(b, c) // sandbox c is gone
				n.ctrd.records = append(n.ctrd.records, Record{ID: "foreign"})
				n.ctrd.tasks = []Task{{ID: a, Pid: 100}, {ID: c, Pid: 200, Status: "RUNNING"}}
				n.host.shims = []Shim{
					{Pid: 99, Namespace: "ours", ID: a, Children: []int{100}},
					{Pid: 98, Namespace: "ours", ID: testID('d'), Children: []int{300}},                  // orphan
					{Pid: 97, Namespace: "ours", ID: testID('e'), Children: []int{200}},                  // serves task c
					{Pid: 96, Namespace: "theirs", ID: testID('f')},                                      // other namespace
					{Pid: 95, Namespace: "ours", ID: testID('9'), Address: "/run/other/containerd.sock"}, // other containerd
				}
				n.ctrd.snapshots["overlayfs"] = []Snapshot{
					{Key: a, Kind: "active"},
					{Key: c, Kind: "active"},
					{Key: imageVolumeSnapshotPrefix + c + "-deadbeef", Kind: "view"},
					{Key: "extract-123 sha256:abc", Kind: "active"},
					{Key: testID('7'), Kind: "committed"},
				}
				n.ctrd.leases = []Lease{
					{ID: imageVolumeLeasePrefix + a},
					{ID: imageVolumeLeasePrefix + c},
					{ID: "12345-pull", Labels: map[string]string{gcExpireLabel: "x"}},
					{ID: "handmade"},
				}
			},
			want: []string{
				"container " + b[:12], "container foreign",
				"lease ", "lease " + c[:12],
				"shim " + testID('d')[:12],
				"snapshot " + c[:12], "snapshot " + c[:12],
				"task " + c[:12],
			},
			orphans: 8,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			tc.setup(n)
			rep := audit(t, n.doctor(time.Minute))
			if tc.want != nil {
				if got := kinds(rep.Findings); !slices.Equal(got, tc.want) {
					t.Errorf("findings:\n got %v\nwant %v\n%s", got, tc.want, table(rep))
				}
			}
			if tc.orphans >= 0 && rep.Orphans() != tc.orphans {
				t.Errorf("Orphans() = %d, want %d\n%s", rep.Orphans(), tc.orphans, table(rep))
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}

func table(rep *Report) string {
	var b bytes.Buffer
	_ = rep.WriteTable(&b)
	return b.String()
}

// repairTwice repairs, checks the result, and checks that a second audit is
// clean and a second repair does nothing.
func repairTwice(t *testing.T, n *node) *Report {
	t.Helper()
	d := n.doctor(time.Minute)
	rep := audit(t, d)
	if err := d.Repair(context.Background(), rep); err != nil {
		t.Fatalf("Repair: %v", err)
	}
	t.Logf("repair:\n%s", table(rep))
	if rep.Orphans() != 0 {
		t.Errorf("after repair: %d orphans left", rep.Orphans())
	}
	again := audit(t, d)
	if len(again.Findings) != 0 {
		t.Errorf("audit after repair:\n%s", table(again))
	}
	before := len(n.ev.log)
	if err := d.Repair(context.Background(), again); err != nil {
		t.Fatalf("second Repair: %v", err)
	}
	if len(n.ev.log) != before {
		t.Errorf("second repair did something: %v", n.ev.log[before:])
	}
	return rep
}

func TestRepairOrphanedSandboxDELFirst(t *testing.T) {
	n := newNode(t)
	a := testID('a')
	n.addPodNetwork(a, "10.99.0.2")
	repairTwice(t, n)

	// CNI DEL ran with the stored ADD arguments, in the netns, before the
	// netns was unmounted.
	var del *DelRequest
	for i := range n.cni.dels {
		if n.cni.dels[i].Network == testNet {
			del = &n.cni.dels[i]
		}
	}
	if del == nil {
		t.Fatalf("no CNI DEL on %s: %+v", testNet, n.cni.dels)
	}
	if del.NetNS != filepath.Join(n.state, "netns", a, "netns") || del.IfName != "eth0" ||
		!slices.Equal(del.Args, [][2]string{{"K8S_POD_NAME", "p"}}) || del.CapabilityArgs["portMappings"] == nil {
		t.Errorf("DEL request %+v, want the stored arguments and the netns", del)
	}
	iDel, iUnmount := n.ev.index("cni-del "+testNet), n.ev.index("unmount "+del.NetNS)
	if iDel < 0 || iUnmount < 0 || iDel > iUnmount {
		t.Errorf("order: %v (want CNI DEL before the netns unmount)", n.ev.log)
	}
	if n.ev.index("iptables") >= 0 {
		t.Errorf("DEL released the chains, yet iptables was run: %v", n.ev.log)
	}
	for _, p := range []string{filepath.Join(n.state, "netns", a), filepath.Join(n.state, "sandboxes", a), filepath.Join(n.root, "sandboxes", a), filepath.Join(n.ipamDir, "10.99.0.2")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists", p)
		}
	}
}

func TestRepairWhenDELFails(t *testing.T) {
	n := newNode(t)
	a := testID('a')
	n.addPodNetwork(a, "10.99.0.2")
	n.cni.fail = true
	rep := repairTwice(t, n)
	for _, f := range rep.Findings {
		if f.Result != ResultRemoved {
			t.Errorf("%s %s: result %q, want removed", f.Kind, f.Path, f.Result)
		}
	}
	if _, err := os.Lstat(filepath.Join(n.ipamDir, "10.99.0.2")); err == nil {
		t.Error("IP file not released after a failed DEL")
	}
	for _, l := range n.ipt.lines {
		if strings.Contains(l, a) || strings.Contains(l, cniChainName(testNet, a, "")) || strings.Contains(l, cniChainName(testNet, a, "DN-")) {
			t.Errorf("iptables line left: %s", l)
		}
	}
	if !slices.Contains(n.ipt.lines, "-N CNI-HOSTPORT-DNAT") {
		t.Error("shared CNI-HOSTPORT-DNAT chain removed")
	}
}

func TestRepairLeavesOwnedAndYoungAlone(t *testing.T) {
	n := newNode(t)
	a, b, c := testID('a'), testID('b'), testID('c')
	n.addSandboxRecord(a, nil) // undecodable
	n.addPodNetwork(a, "10.99.0.2")
	n.addSandboxRecord(b, &sandbox.Metadata{ID: b, Phase: sandbox.PhaseCreated})
	n.addPodNetwork(b, "10.99.0.3")
	n.addPodNetwork(c, "10.99.0.4") // orphan, but young
	d := n.doctor(time.Minute)
	rep := audit(t, d)
	// c is young: make its files new.
	n.now = time.Now()
	rep = audit(t, d)
	if err := d.Repair(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	if len(n.cni.dels) != 0 || len(n.ev.log) != 0 {
		t.Errorf("repair touched something: dels %+v, events %v", n.cni.dels, n.ev.log)
	}
	for _, id := range []string{a, b, c} {
		if _, err := os.Lstat(filepath.Join(n.state, "netns", id)); err != nil {
			t.Errorf("netns dir of %s removed", short(id))
		}
	}
}

// TestRepairSkipsIDThatBecameOwned: a sandbox that gets its containerd
// record between the audit and the repair (a RunPodSandbox) is left alone.
func TestRepairSkipsIDThatBecameOwned(t *testing.T) {
	n := newNode(t)
	a := testID('a')
	n.addPodNetwork(a, "10.99.0.2")
	d := n.doctor(time.Minute)
	rep := audit(t, d)
	if rep.Orphans() == 0 {
		t.Fatal("no orphans")
	}
	n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreating})
	if err := d.Repair(context.Background(), rep); err != nil {
		t.Fatal(err)
	}
	if len(n.ev.log) != 0 {
		t.Errorf("repair touched an owned sandbox: %v", n.ev.log)
	}
	if rep.Orphans() != 0 {
		t.Errorf("Orphans() = %d after the IDs became owned\n%s", rep.Orphans(), table(rep))
	}
}

func TestRepairContainerdLeftovers(t *testing.T) {
	n := newNode(t)
	a, c := testID('a'), testID('c')
	n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated})
	n.ctrd.tasks = []Task{{ID: c, Pid: 200}}
	n.host.shims = []Shim{{Pid: 98, Namespace: "ours", ID: testID('d'), Children: []int{300}}}
	n.ctrd.snapshots["overlayfs"] = []Snapshot{{Key: c, Kind: "active"}, {Key: imageVolumeSnapshotPrefix + c + "-x", Kind: "view"}}
	n.ctrd.leases = []Lease{{ID: imageVolumeLeasePrefix + c}}
	// The containerd sandbox record of a gone sandbox goes; the live one's stays.
	n.ctrd.sbRecords = []Lease{{ID: a}, {ID: c}}
	n.addContainerDirs(c, c+"-stdout")
	repairTwice(t, n)
	if n.ev.index("delete-sandbox-record "+a) >= 0 {
		t.Errorf("the record of live sandbox %s was deleted: %v", a, n.ev.log)
	}
	for _, want := range []string{"delete-task " + c, "kill 300", "kill 98", "remove-snapshot overlayfs " + c, "delete-lease " + imageVolumeLeasePrefix + c, "delete-sandbox-record " + c} {
		if n.ev.index(want) < 0 {
			t.Errorf("missing %q in %v", want, n.ev.log)
		}
	}
	if n.ev.index("kill 300") > n.ev.index("kill 98") {
		t.Errorf("shim killed before its children: %v", n.ev.log)
	}
}

func TestReportJSON(t *testing.T) {
	n := newNode(t)
	n.addContainerDirs(testID('c'))
	rep := audit(t, n.doctor(time.Minute))
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Namespace string
		Orphans   int
		Findings  []struct{ Kind, ID, Path, Reason string }
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if got.Namespace != "ours" || got.Orphans != 2 || len(got.Findings) != 2 || got.Findings[0].ID != testID('c') {
		t.Errorf("JSON report: %s", b.String())
	}
}

func TestParseIPTables(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{`-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "name: \"net\" id: \"abc\"" -j CNI-1`,
			[]string{"-A", "POSTROUTING", "-s", "10.0.0.2/32", "-m", "comment", "--comment", `name: "net" id: "abc"`, "-j", "CNI-1"}},
		{`-N CNI-DN-1`, []string{"-N", "CNI-DN-1"}},
		{`-A X -m comment --comment "two words" -j ACCEPT`, []string{"-A", "X", "-m", "comment", "--comment", "two words", "-j", "ACCEPT"}},
	} {
		if got := splitIPTablesLine(tc.line); !slices.Equal(got, tc.want) {
			t.Errorf("split(%s) = %q, want %q", tc.line, got, tc.want)
		}
	}
	tbl := parseIPTables(false, "nat", []string{
		"-N CNI-HOSTPORT-DNAT", "-N CNI-aaa", "-N CNI-DN-bbb",
		`-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "name: \"net\" id: \"abc\"" -j CNI-aaa`,
		`-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"net\" id: \"abc\"" -m multiport --dports 80 -j CNI-DN-bbb`,
		`-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"other\" id: \"xyz\"" -j CNI-DN-ccc`,
	})
	got := chainOwners(tbl, map[string]bool{"net": true})
	if len(got) != 2 || got["CNI-aaa"] != [2]string{"net", "abc"} || got["CNI-DN-bbb"] != [2]string{"net", "abc"} {
		t.Errorf("chainOwners = %v", got)
	}
	// The chain name the plugins derive (utils.FormatChainName).
	if c := cniChainName("test", "1234", ""); len(c) != 28 || !strings.HasPrefix(c, "CNI-") {
		t.Errorf("cniChainName = %q", c)
	}
}

func TestParseIPAMFile(t *testing.T) {
	for _, tc := range []struct{ in, id, ifname string }{
		{"abc\r\neth0", "abc", "eth0"},
		{"abc\neth1\n", "abc", "eth1"},
		{"abc", "abc", ""},
		{"", "", ""},
	} {
		id, ifn := parseIPAMFile([]byte(tc.in))
		if id != tc.id || ifn != tc.ifname {
			t.Errorf("parseIPAMFile(%q) = %q, %q", tc.in, id, ifn)
		}
	}
}

// TestRepairTornDownSandboxUsesMetadata: a sandbox whose network was torn
// down but whose IP remains, with no libcni cache entry, gets CNI DEL with
// the arguments of its ADD rebuilt from its metadata; its own dirs and netns
// (the daemon's) are left alone.
func TestRepairTornDownSandboxUsesMetadata(t *testing.T) {
	n := newNode(t)
	a := testID('a')
	n.addSandboxRecord(a, &sandbox.Metadata{ID: a, Phase: sandbox.PhaseCreated, NetworkTornDown: true, Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "u1"},
		PortMappings: []*runtimeapi.PortMapping{{HostPort: 8080, ContainerPort: 80}},
	}})
	n.addPodNetwork(a, "10.99.0.2")
	matches, _ := filepath.Glob(filepath.Join(n.cacheDir, "results", "*"))
	for _, m := range matches {
		must(t, os.Remove(m))
	}
	rep := repairTwice(t, n)
	if len(n.cni.dels) != 1 {
		t.Fatalf("DELs %+v, want one", n.cni.dels)
	}
	del := n.cni.dels[0]
	if !slices.Contains(del.Args, [2]string{"K8S_POD_NAME", "web"}) || !slices.Contains(del.Args, [2]string{"K8S_POD_UID", "u1"}) {
		t.Errorf("DEL args %v, want the pod's", del.Args)
	}
	pms, _ := del.CapabilityArgs["portMappings"].([]map[string]any)
	if len(pms) != 1 || pms[0]["hostPort"] != int32(8080) || pms[0]["protocol"] != "tcp" {
		t.Errorf("DEL portMappings %#v", del.CapabilityArgs["portMappings"])
	}
	for _, f := range rep.Findings {
		if f.Kind != KindIPAM && f.Kind != KindIPTables {
			t.Errorf("unexpected finding %+v", f)
		}
	}
	if _, err := os.Stat(filepath.Join(n.state, "netns", a)); err != nil {
		t.Errorf("the daemon's netns dir was touched: %v", err)
	}
}

package stats

import (
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

const netDev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      10    0    0    0     0          0         0     1234      10    0    0    0     0       0          0
  eth0: 9876543     321    1    2    0     0          0         5  1234567     123    3    4    0     0       0          0
  net1:100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0
`

func TestParseNetDev(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		want    []InterfaceStats
		wantErr bool
	}{
		{name: "procfs", in: netDev, want: []InterfaceStats{
			{Name: "lo", RxBytes: 1234, RxPackets: 10, TxBytes: 1234, TxPackets: 10},
			{Name: "eth0", RxBytes: 9876543, RxPackets: 321, RxErrors: 1, RxDropped: 2, TxBytes: 1234567, TxPackets: 123, TxErrors: 3, TxDropped: 4},
			{Name: "net1", RxBytes: 100, RxPackets: 1, TxBytes: 200, TxPackets: 2},
		}},
		{name: "headers only", in: strings.Join(strings.Split(netDev, "\n")[:2], "\n"), want: nil},
		{name: "empty", in: "", want: nil},
		{name: "short line", in: "eth0: 1 2 3\n", wantErr: true},
		{name: "not a number", in: "eth0: x 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", wantErr: true},
		{name: "no colon", in: "garbage line\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNetDev(strings.NewReader(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("iface %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseHostNetDev(t *testing.T) {
	f, err := os.Open("/proc/net/dev")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	ifaces, err := ParseNetDev(f)
	if err != nil || len(ifaces) == 0 {
		t.Fatalf("host /proc/net/dev: %v %v", ifaces, err)
	}
}

func TestNetworkUsage(t *testing.T) {
	eth0 := InterfaceStats{Name: "eth0", RxBytes: 1, TxBytes: 2, RxErrors: 3, TxErrors: 4}
	net1 := InterfaceStats{Name: "net1", RxBytes: 5}
	lo := InterfaceStats{Name: "lo", RxBytes: 100}
	for _, tc := range []struct {
		name    string
		in      []InterfaceStats
		def     string
		names   []string
		wantNil bool
	}{
		{name: "eth0 is default", in: []InterfaceStats{lo, net1, eth0}, def: "eth0", names: []string{"net1", "eth0"}},
		{name: "first non-loopback without eth0", in: []InterfaceStats{lo, net1}, def: "net1", names: []string{"net1"}},
		{name: "loopback only", in: []InterfaceStats{lo}, wantNil: true},
		{name: "none", wantNil: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NetworkUsage(tc.in, t0)
			if tc.wantNil {
				if n != nil {
					t.Fatalf("want nil, got %v", n)
				}
				return
			}
			if n.Timestamp != t0.UnixNano() || n.DefaultInterface.GetName() != tc.def || len(n.Interfaces) != len(tc.names) {
				t.Fatalf("usage = %v", n)
			}
			for i, name := range tc.names {
				if n.Interfaces[i].Name != name {
					t.Errorf("iface %d = %s", i, n.Interfaces[i].Name)
				}
			}
		})
	}
	n := NetworkUsage([]InterfaceStats{eth0}, t0)
	d := n.DefaultInterface
	if d.RxBytes.Value != 1 || d.TxBytes.Value != 2 || d.RxErrors.Value != 3 || d.TxErrors.Value != 4 {
		t.Errorf("counters = %v", d)
	}
}

func TestReadNetDev(t *testing.T) {
	if _, err := ReadNetDev("", 0); !errdefs.IsNotFound(err) {
		t.Errorf("nothing to read: %v", err)
	}
	if _, err := ReadNetDev("/nonexistent/netns", 0); !errdefs.IsNotFound(err) {
		t.Errorf("missing netns: %v", err)
	}
	// Our own process: /proc/<pid>/net/dev is always readable.
	ifaces, err := ReadNetDev("/nonexistent/netns", uint32(os.Getpid()))
	if err != nil || len(ifaces) == 0 {
		t.Errorf("fallback to pid: %v %v", ifaces, err)
	}
	// Entering a namespace needs CAP_SYS_ADMIN; our own netns is a valid target.
	if os.Geteuid() == 0 {
		ifaces, err := ReadNetDev("/proc/self/ns/net", 0)
		if err != nil || len(ifaces) == 0 {
			t.Errorf("own netns: %v %v", ifaces, err)
		}
	}
}

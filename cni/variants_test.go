package cni

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocni "github.com/containerd/go-cni"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni/cnitest"
)

// chainedScript is a chained plugin that records its runs ("ADD portmap")
// in the file at @LOG@ and answers ADD with a result.
const chainedScript = `#!/bin/sh
cat >/dev/null
if [ "$CNI_COMMAND" = VERSION ]; then
  printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'
  exit 0
fi
echo "$CNI_COMMAND $(basename "$0")" >> '@LOG@'
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"@IP@/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS"
fi
exit 0
`

// chainEnv is the fake network followed by recording portmap and bandwidth
// plugins, with bandwidthConf as the bandwidth plugin's extra settings.
func chainEnv(t *testing.T, bandwidthConf string) (*Manager, func() []string) {
	t.Helper()
	p := cnitest.Install(t)
	log := filepath.Join(p.Dir, "runs")
	body := strings.NewReplacer("@LOG@", log, "@IP@", cnitest.PodIP).Replace(chainedScript)
	for _, name := range []string{pluginPortmap, pluginBandwidth, "loopback"} {
		if err := os.WriteFile(filepath.Join(p.BinDir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := `{"cniVersion":"1.0.0","name":"chain","plugins":[` +
		`{"type":"` + cnitest.Network + `"},` +
		`{"type":"portmap","capabilities":{"portMappings":true},"snat":true},` +
		`{"type":"bandwidth","capabilities":{"bandwidth":true}` + bandwidthConf + `}]}`
	if err := os.WriteFile(filepath.Join(p.ConfDir, "10-chain.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(p.ConfDir, []string{p.BinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Status(); err != nil {
		t.Fatalf("Status: %v", err)
	}
	m.setLoopbackUp = func(string) error { return nil }
	runs := func() []string {
		b, _ := os.ReadFile(log)
		_ = os.Remove(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	return m, runs
}

// TestIdlePluginsNotRun: portmap runs only for pods with port mappings;
// bandwidth's ADD only for pods with bandwidth annotations or when its
// configuration sets a rate of its own; bandwidth's DEL always; the chain's
// first plugin always. A pod's result is the same either way.
func TestIdlePluginsNotRun(t *testing.T) {
	ports := []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080}}
	bw := map[string]string{ingressBandwidthAnnotation: "10M"}
	for _, tc := range []struct {
		name          string
		bandwidthConf string
		ports         []*runtimeapi.PortMapping
		annotations   map[string]string
		wantAdd       []string
		wantDel       []string
	}{
		{name: "plain pod", wantAdd: nil, wantDel: []string{"bandwidth"}},
		{name: "host port", ports: ports, wantAdd: []string{"portmap"}, wantDel: []string{"bandwidth", "portmap"}},
		{name: "bandwidth annotation", annotations: bw, wantAdd: []string{"bandwidth"}, wantDel: []string{"bandwidth"}},
		{name: "both", ports: ports, annotations: bw, wantAdd: []string{"portmap", "bandwidth"}, wantDel: []string{"bandwidth", "portmap"}},
		{name: "static rate", bandwidthConf: `,"ingressRate":1000000,"ingressBurst":100000`, wantAdd: []string{"bandwidth"}, wantDel: []string{"bandwidth"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, runs := chainEnv(t, tc.bandwidthConf)
			cfg := &runtimeapi.PodSandboxConfig{
				Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"},
				PortMappings: tc.ports,
				Annotations:  tc.annotations,
			}
			args, err := NewPodArgs("pod", cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := m.Setup(context.Background(), "pod", "/var/run/netns/fake", args)
			if err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if ip, _, err := PodIPs(res); err != nil || ip != cnitest.PodIP {
				t.Errorf("pod IP %q (%v), want %s", ip, err, cnitest.PodIP)
			}
			if got := pluginRuns(runs(), "ADD"); !slices.Equal(got, tc.wantAdd) {
				t.Errorf("ADD ran %v, want %v", got, tc.wantAdd)
			}
			if err := TeardownPod(context.Background(), m, "pod", "/var/run/netns/fake", args, true); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if got := pluginRuns(runs(), "DEL"); !slices.Equal(got, tc.wantDel) {
				t.Errorf("DEL ran %v, want %v", got, tc.wantDel)
			}
		})
	}
}

// pluginRuns lists the plugins recorded for op, in order.
func pluginRuns(lines []string, op string) []string {
	var out []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 && f[0] == op {
			out = append(out, f[1])
		}
	}
	return out
}

// TestPrunedListsKeepFirstPlugin: a list whose first plugin is one that may
// be left out keeps it (it is not chained), and a list with nothing to
// leave out is kept byte for byte.
func TestPrunedListsKeepFirstPlugin(t *testing.T) {
	load := func(lists ...string) *gocni.ConfigResult {
		c, err := gocni.New(gocni.WithMinNetworkCount(1))
		if err != nil {
			t.Fatal(err)
		}
		var opts []gocni.Opt
		for _, l := range lists {
			opts = append(opts, gocni.WithConfListBytes([]byte(l)))
		}
		if err := c.Load(opts...); err != nil {
			t.Fatal(err)
		}
		return c.GetConfig()
	}
	first := `{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"portmap","capabilities":{"portMappings":true}},{"type":"bandwidth"}]}`
	plain := `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"},{"type":"firewall"}]}`
	lists, pruned, err := prunedLists(load(first, plain), skipPortmap|skipBandwidth)
	if err != nil || !pruned {
		t.Fatalf("pruned %v, err %v", pruned, err)
	}
	if got := string(lists[0]); !strings.Contains(got, `"portmap"`) || strings.Contains(got, `"bandwidth"`) {
		t.Errorf("first list %s: want portmap kept (first), bandwidth left out", got)
	}
	if string(lists[1]) != plain {
		t.Errorf("second list changed: %s", lists[1])
	}
}

// TestLoopbackPluginDELForPodsItSetUp: ADD never runs the loopback plugin
// (lo is brought up in-process); DEL runs it for a pod whose recorded ADD
// result has an lo interface (made by an earlier version, which ran it) or
// is unknown, so that libcni's cached result of that network goes too.
func TestLoopbackPluginDELForPodsItSetUp(t *testing.T) {
	old := []byte(`{"Interfaces":{"lo":{"IPConfigs":[{"IP":"127.0.0.1"}]},"eth0":{"IPConfigs":[{"IP":"10.99.0.5"}]}}}`)
	recent := []byte(`{"Interfaces":{"eth0":{"IPConfigs":[{"IP":"10.99.0.5"}]}}}`)
	for _, tc := range []struct {
		name   string
		result []byte
		want   bool
	}{
		{"made by an earlier version", old, true},
		{"made in-process", recent, false},
		{"ADD result unknown", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LoopbackInResult(tc.result); got != tc.want {
				t.Fatalf("LoopbackInResult = %v, want %v", got, tc.want)
			}
			m, runs := chainEnv(t, "")
			loUp := 0
			m.setLoopbackUp = func(string) error { loUp++; return nil }
			args, err := NewPodArgs("pod", &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Setup(context.Background(), "pod", "/var/run/netns/fake", args); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			if got := pluginRuns(runs(), "ADD"); slices.Contains(got, "loopback") || loUp != 1 {
				t.Errorf("ADD ran %v and brought lo up %d times; want no loopback plugin, lo up once", got, loUp)
			}
			args.LoopbackPlugin = LoopbackInResult(tc.result)
			if err := TeardownPod(context.Background(), m, "pod", "/var/run/netns/fake", args, true); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if got := slices.Contains(pluginRuns(runs(), "DEL"), "loopback"); got != tc.want {
				t.Errorf("DEL ran the loopback plugin: %v, want %v", got, tc.want)
			}
		})
	}
}

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// capfaultNet is a private CNI network: the real bridge plugin with
// host-local IPAM (its own bridge, /24 in 10.232.0.0/16 and dataDir, so
// that every allocation file in it is ours), followed by the capfault
// plugin (test/cniplugins/capfault), which refuses port mappings on ADD or
// DEL as its control files say.
type capfaultNet struct {
	binDir, confDir, ctl, ipam string
	bridge, subnet             string
}

func newCapfaultNet(t *testing.T, realBinDir string) *capfaultNet {
	t.Helper()
	base := t.TempDir()
	n := &capfaultNet{
		binDir:  filepath.Join(base, "bin"),
		confDir: filepath.Join(base, "net.d"),
		ctl:     filepath.Join(base, "ctl"),
		ipam:    filepath.Join(base, "ipam"),
		bridge:  "crcf" + framework.RandomSuffix()[:6],
		subnet:  freeSubnet(t),
	}
	for _, d := range []string{n.binDir, n.confDir, n.ctl, n.ipam} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(n.binDir, "capfault"), "./test/cniplugins/capfault")
	build.Dir = framework.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building capfault: %v\n%s", err, out)
	}
	entries, err := os.ReadDir(realBinDir)
	if err != nil {
		t.Fatalf("reading CNI bin dir: %v", err)
	}
	for _, e := range entries {
		if e.Name() == "capfault" {
			continue
		}
		if err := os.Symlink(filepath.Join(realBinDir, e.Name()), filepath.Join(n.binDir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "cri-e2e-capfault-" + framework.RandomSuffix(),
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": n.bridge, "isGateway": true, "ipMasq": false,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": n.subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": n.ipam,
				},
			},
			map[string]any{"type": "capfault", "capabilities": map[string]bool{"portMappings": true}, "capfaultControl": n.ctl},
		},
	}
	b, _ := json.Marshal(conf)
	if err := os.WriteFile(filepath.Join(n.confDir, "10-capfault.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
			t.Logf("removing bridge %s: %v: %s", n.bridge, err, out)
		}
	})
	return n
}

// freeSubnet picks a /24 in 10.232.0.0/16 that no interface is in.
func freeSubnet(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for range 64 {
		b := make([]byte, 1)
		_, _ = rand.Read(b)
		_, cidr, _ := net.ParseCIDR(fmt.Sprintf("10.232.%d.0/24", b[0]))
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (cidr.Contains(ipn.IP) || ipn.Contains(cidr.IP)) {
				used = true
			}
		}
		if !used {
			return cidr.String()
		}
	}
	t.Skip("no free /24 in 10.232.0.0/16")
	return ""
}

// set turns a capfault control file on or off.
func (n *capfaultNet) set(t *testing.T, name string, on bool) {
	t.Helper()
	p := filepath.Join(n.ctl, name)
	if on {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// allocations lists host-local's allocation files in the private dataDir.
func (n *capfaultNet) allocations(t *testing.T) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(n.ipam, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type().IsRegular() && e.Name() != "lock" && !strings.HasPrefix(e.Name(), "last_reserved_ip") {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", n.ipam, err)
	}
	return out
}

// A plugin that refuses the pod's port mappings on ADD and on DEL (as
// portmap does with a container port of 0) made the rollback DEL fail, so
// host-local never released the address: one leaked per such request.
func TestRegressionCNIDelFailureLeaksIP(t *testing.T) {
	var n *capfaultNet
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		n = newCapfaultNet(t, env.CNIBinDir)
		env.CNIBinDir, env.CNIConfDir = n.binDir, n.confDir
	})
	rc := s.rc()
	port := int32(framework.FreeTCPPort(t, 20000, 30000))
	t.Logf("private CNI network: bridge %s, subnet %s, IPAM %s", n.bridge, n.subnet, n.ipam)

	t.Run("rollback", func(t *testing.T) {
		n.set(t, "fail-add-ports", true)
		n.set(t, "fail-del-ports", true)
		defer n.set(t, "fail-add-ports", false)
		defer n.set(t, "fail-del-ports", false)
		cfg := framework.PodConfig("capfault-rollback", framework.WithPortMapping(port, 80))
		if _, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg}); err == nil {
			t.Fatal("RunPodSandbox succeeded although ADD failed")
		} else {
			t.Logf("RunPodSandbox: %v", err)
		}
		if got := n.allocations(t); len(got) != 0 {
			t.Errorf("addresses leaked: %v", got)
		}
		if ids := framework.ListPodIDs(t, rc); len(ids) != 0 {
			t.Errorf("sandboxes left: %v", ids)
		}
	})

	t.Run("DEL fails altogether: kept NOTREADY until stop succeeds", func(t *testing.T) {
		n.set(t, "fail-add-ports", true)
		n.set(t, "fail-del-ports", true)
		n.set(t, "fail-del", true)
		defer n.set(t, "fail-add-ports", false)
		defer n.set(t, "fail-del-ports", false)
		defer n.set(t, "fail-del", false)
		cfg := framework.PodConfig("capfault-kept", framework.WithPortMapping(port, 80))
		if _, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg}); err == nil {
			t.Fatal("RunPodSandbox succeeded although ADD failed")
		}
		ids := framework.ListPodIDs(t, rc)
		if len(ids) != 1 {
			t.Fatalf("sandboxes %v, want the one kept with its address", ids)
		}
		id := ids[0]
		if st, ok := framework.ListedPodState(t, rc, id); !ok || st != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
			t.Errorf("kept sandbox state %v (listed %v), want NOTREADY", st, ok)
		}
		if got := n.allocations(t); len(got) != 1 {
			t.Fatalf("allocations %v, want the kept sandbox's one", got)
		}
		if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err == nil {
			t.Fatal("StopPodSandbox succeeded although every DEL fails")
		}

		// The plugin works again, except that it still refuses the port
		// mappings: the stop drops them and releases the address.
		n.set(t, "fail-del", false)
		if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if _, err := rc.RemovePodSandbox(sbCtx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		if got := n.allocations(t); len(got) != 0 {
			t.Errorf("addresses leaked: %v", got)
		}
		s.assertNoLeaks(t, id)
	})

	// After a successful ADD, valid port mappings are never dropped from DEL
	// (portmap would keep its DNAT rules): the sandbox keeps its address,
	// NOTREADY, until a stop's DEL succeeds.
	t.Run("stop after a successful ADD", func(t *testing.T) {
		cfg := framework.PodConfig("capfault-stop", framework.WithPortMapping(port, 80))
		id := runPod(t, rc, cfg, "")
		if got := n.allocations(t); len(got) != 1 {
			t.Fatalf("allocations %v, want the pod's", got)
		}
		n.set(t, "fail-del-ports", true)
		defer n.set(t, "fail-del-ports", false)
		if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err == nil {
			t.Fatal("StopPodSandbox succeeded although DEL fails with the pod's port mappings")
		}
		if _, err := rc.RemovePodSandbox(sbCtx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err == nil {
			t.Fatal("RemovePodSandbox succeeded although the network is not torn down")
		}
		if got := n.allocations(t); len(got) != 1 {
			t.Fatalf("allocations %v, want the pod's, still held", got)
		}
		n.set(t, "fail-del-ports", false)
		if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if _, err := rc.RemovePodSandbox(sbCtx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		if got := n.allocations(t); len(got) != 0 {
			t.Errorf("addresses leaked: %v", got)
		}
		s.assertNoLeaks(t, id)
	})
}

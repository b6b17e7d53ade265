package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// usernsRunc is the runc with idmapped mounts deploy/install.sh builds
// (CRI_E2E_USERNS_RUNC overrides it).
func usernsRunc(t *testing.T) string {
	p := os.Getenv("CRI_E2E_USERNS_RUNC")
	if p == "" {
		p = "/opt/cri-containerd/bin/runc"
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no runc with idmapped mounts at %s (deploy/install.sh builds it): %v", p, err)
	}
	return p
}

func newUsernsEnv(t *testing.T, runc string) *ctrEnv {
	t.Helper()
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	if env.CNIConfDir == "" {
		t.Skip("e2e stack not configured: CNI_CONF_DIR is not set")
	}
	logRoot := t.TempDir()
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD, RuncBinary: runc})
	t.Cleanup(func() {
		if d.IsRunning() {
			framework.StopAndRemovePods(t, d.RuntimeClient())
		}
		framework.UnmountUnder(t, d.Dir)
	})
	e := &ctrEnv{t: t, env: env, d: d, logRoot: logRoot}
	e.imageID = framework.PullImageOrFail(t, d, framework.BusyboxImageRef)
	return e
}

func handlerUserns(t *testing.T, rc runtimeapi.RuntimeServiceClient) bool {
	t.Helper()
	st, err := rc.Status(framework.RPCContext(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range st.GetRuntimeHandlers() {
		if h.GetName() == "" || h.GetName() == "runc" {
			return h.GetFeatures().GetUserNamespaces()
		}
	}
	t.Fatalf("no default runtime handler in %v", st.GetRuntimeHandlers())
	return false
}

func usernsOpts(mode runtimeapi.NamespaceMode, hostID, length uint32) *runtimeapi.UserNamespace {
	u := &runtimeapi.UserNamespace{Mode: mode}
	if mode == runtimeapi.NamespaceMode_POD {
		m := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: hostID, Length: length}}
		u.Uids, u.Gids = m, m
	}
	return u
}

func withUserns(u *runtimeapi.UserNamespace) framework.PodOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u }
}

// uidMap is /proc/self/uid_map's first line as "inside host length".
func uidMap(t *testing.T, e *ctrEnv, id string) string {
	t.Helper()
	out, stderr, code := framework.ExecSyncOrFail(t, e.rc(), id, 30*time.Second, "cat", "/proc/self/uid_map")
	if code != 0 {
		t.Fatalf("cat /proc/self/uid_map: exit %d, %s", code, stderr)
	}
	first, _, _ := strings.Cut(out, "\n")
	return strings.Join(strings.Fields(first), " ")
}

func hostOwner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// TestUserNamespacePod runs hostUsers:false pods (POD-mode user namespace)
// on runc v1.5.3: the containers see the mapping, share the pause's user
// namespace, own their idmapped rootfs, and write through an idmapped volume
// as the host's root (a volume without mappings gets the mapped host uid).
// Host network works with /sys bound from the host; NODE mode is the host's
// user namespace; bad mappings are InvalidArgument.
func TestUserNamespacePod(t *testing.T) {
	e := newUsernsEnv(t, usernsRunc(t))
	if !handlerUserns(t, e.rc()) {
		t.Fatal("runtime handler features: user_namespaces false on runc v1.5.3")
	}
	const hostID, length = 231072, 65536
	u := usernsOpts(runtimeapi.NamespaceMode_POD, hostID, length)
	podID, podCfg := e.runPod("userns", withUserns(u))

	mapped, plain := t.TempDir(), t.TempDir()
	for _, d := range []string{mapped, plain} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mapped, "from-host"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctr := framework.NewContainerConfig("worker", framework.BusyboxImageRef, "sleep", "3600")
	ctr.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
	// As kubelet does for hostUsers:false pods: volumes carry the pod's mappings.
	ctr.Mounts = []*runtimeapi.Mount{
		{ContainerPath: "/mapped", HostPath: mapped, UidMappings: u.Uids, GidMappings: u.Gids},
		{ContainerPath: "/plain", HostPath: plain},
	}
	id := e.run(podID, podCfg, ctr)
	second := framework.NewContainerConfig("second", framework.BusyboxImageRef, "sleep", "3600")
	second.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
	id2 := e.run(podID, podCfg, second)

	if got, want := uidMap(t, e, id), "0 231072 65536"; got != want {
		t.Fatalf("uid_map %q, want %q", got, want)
	}
	sh := func(cid, script string) string {
		t.Helper()
		out, stderr, code := framework.ExecSyncOrFail(t, e.rc(), cid, 30*time.Second, "sh", "-c", script)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s%s", script, code, out, stderr)
		}
		return strings.TrimSpace(out)
	}
	// Both containers are in one user namespace (the pause's), not the host's.
	ns1, ns2 := sh(id, "readlink /proc/self/ns/user"), sh(id2, "readlink /proc/self/ns/user")
	hostNS, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	if ns1 != ns2 || ns1 == hostNS {
		t.Fatalf("user namespaces: %s and %s, host %s", ns1, ns2, hostNS)
	}
	// The rootfs is idmapped: the image's root-owned files are root's inside
	// (nobody, 65534, without the remap) and root can write them.
	if got := sh(id, "stat -c %u:%g /bin /etc/passwd | sort -u; touch /etc/passwd /new-file && echo ok"); got != "0:0\nok" {
		t.Fatalf("rootfs ownership/writes: %q", got)
	}
	// Volumes: through the idmapped mount, root writes as the host's root;
	// through the plain one, as the mapped host uid.
	if got := sh(id, "stat -c %u /mapped/from-host; echo a > /mapped/f; echo b > /plain/f; id -u"); got != "0\n0" {
		t.Fatalf("volume ownership inside: %q", got)
	}
	if uid, gid := hostOwner(t, filepath.Join(mapped, "f")); uid != 0 || gid != 0 {
		t.Fatalf("file written to the idmapped volume: host owner %d:%d, want 0:0", uid, gid)
	}
	if uid, gid := hostOwner(t, filepath.Join(plain, "f")); uid != hostID || gid != hostID {
		t.Fatalf("file written to the plain volume: host owner %d:%d, want %d:%d", uid, gid, hostID, hostID)
	}
	// The pod's network namespace belongs to its user namespace: sysfs is
	// mounted (the pod's interfaces only) and the loopback is there.
	if got := sh(id, "ls /sys/class/net | sort | tr '\\n' ' '"); !strings.HasPrefix(got, "eth0 lo") {
		t.Fatalf("/sys/class/net: %q", got)
	}
	// The /etc/hosts and resolv.conf of the pod are readable (idmapped binds).
	sh(id, "cat /etc/hosts /etc/resolv.conf >/dev/null")

	t.Run("host network", func(t *testing.T) {
		hpID, hpCfg := e.runPod("userns-hostnet", withUserns(u), framework.WithHostNetwork())
		c := framework.NewContainerConfig("hostnet", framework.BusyboxImageRef, "sleep", "3600")
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		cid := e.run(hpID, hpCfg, c)
		if got, want := uidMap(t, e, cid), "0 231072 65536"; got != want {
			t.Fatalf("uid_map %q, want %q", got, want)
		}
		if got := sh(cid, "ls /sys/class/net | grep -c ."); got == "0" {
			t.Fatal("no host interfaces under /sys/class/net")
		}
	})

	t.Run("NODE mode is the host's user namespace", func(t *testing.T) {
		n := usernsOpts(runtimeapi.NamespaceMode_NODE, 0, 0)
		npID, npCfg := e.runPod("userns-node", withUserns(n))
		c := framework.NewContainerConfig("node", framework.BusyboxImageRef, "sleep", "3600")
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = n
		cid := e.run(npID, npCfg, c)
		if got := uidMap(t, e, cid); got != "0 0 4294967295" {
			t.Fatalf("uid_map %q, want the host's", got)
		}
	})

	t.Run("invalid mappings", func(t *testing.T) {
		for name, bad := range map[string]*runtimeapi.UserNamespace{
			"two lines": {Mode: runtimeapi.NamespaceMode_POD,
				Uids: []*runtimeapi.IDMapping{{HostId: 1000, Length: 10}, {ContainerId: 10, HostId: 3000, Length: 10}},
				Gids: []*runtimeapi.IDMapping{{HostId: 1000, Length: 10}}},
			"root not mapped": usernsOpts(runtimeapi.NamespaceMode_POD, 1000, 100),
			"CONTAINER":       {Mode: runtimeapi.NamespaceMode_CONTAINER},
		} {
			if name == "root not mapped" {
				bad.Uids[0].ContainerId, bad.Gids[0].ContainerId = 1, 1
			}
			cfg := framework.PodConfig("userns-bad", withUserns(bad))
			_, err := e.rc().RunPodSandbox(framework.RPCContext(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: RunPodSandbox: %v, want InvalidArgument", name, err)
			}
		}
	})
}

// TestUserNamespaceUnsupportedRunc: with Debian's runc 1.1.5 (no idmapped
// mounts) the handler reports no user namespace support and a POD-mode pod
// is refused (Unimplemented) before anything is made; NODE mode still runs.
func TestUserNamespaceUnsupportedRunc(t *testing.T) {
	const old = "/usr/sbin/runc"
	if _, err := os.Stat(old); err != nil {
		t.Skipf("no Debian runc: %v", err)
	}
	e := newUsernsEnv(t, old)
	if handlerUserns(t, e.rc()) {
		t.Fatal("runtime handler features: user_namespaces true on runc 1.1.5")
	}
	cfg := framework.PodConfig("userns-old", withUserns(usernsOpts(runtimeapi.NamespaceMode_POD, 231072, 65536)))
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	_, err := e.rc().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("RunPodSandbox with a POD user namespace on runc 1.1.5: %v, want Unimplemented", err)
	}
	if ids := framework.ListPodIDs(t, e.rc()); len(ids) != 0 {
		t.Fatalf("pods left: %v", ids)
	}
	e.runPod("userns-old-node", withUserns(usernsOpts(runtimeapi.NamespaceMode_NODE, 0, 0)))
}

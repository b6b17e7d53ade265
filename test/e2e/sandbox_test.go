package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// sbEnv is a private daemon for one sandbox test.
type sbEnv struct {
	env  framework.StackEnv
	d    *framework.Daemon
	ipam string // host-local dataDir of the daemon's CNI config
}

func (s *sbEnv) rc() runtimeapi.RuntimeServiceClient { return s.d.RuntimeClient() }

// startSandboxDaemon starts a private daemon (own socket, root, state dirs and
// containerd namespace) on the stack's containerd, registry mirrors and CNI.
// mutate may change the environment first (e.g. CNIConfDir, CNIBinDir).
func startSandboxDaemon(t *testing.T, mutate func(*framework.StackEnv)) *sbEnv {
	t.Helper()
	return startSandboxDaemonOpts(t, mutate, framework.DaemonOptions{})
}

// startSandboxDaemonOpts is startSandboxDaemon with daemon options (the
// registry config is always the stack's mirrors).
func startSandboxDaemonOpts(t *testing.T, mutate func(*framework.StackEnv), opts framework.DaemonOptions) *sbEnv {
	t.Helper()
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	if env.CNIConfDir == "" || env.CNIBinDir == "" {
		t.Skip("e2e stack not configured: CNI_CONF_DIR / CNI_BIN_DIR are not set")
	}
	if mutate != nil {
		mutate(&env)
	}
	s := &sbEnv{env: env}
	opts.RegistryConfigPath = env.CertsD
	s.d = framework.StartDaemon(t, env, opts)
	s.ipam = framework.IPAMDataDir(t, env.CNIConfDir)
	// Runs before the daemon is stopped (cleanups are LIFO): remove what the
	// test left, then unmount anything still mounted in the temp dir.
	t.Cleanup(func() {
		framework.StopAndRemovePods(t, s.d.RuntimeClient())
		framework.UnmountUnder(t, s.d.Dir)
	})
	return s
}

// assertNoLeaks fails the test for anything left of the sandboxes ids (and,
// the namespace being private, of any other containerd object).
func (s *sbEnv) assertNoLeaks(t *testing.T, ids ...string) {
	t.Helper()
	leaks := framework.SandboxLeaks(t, s.d, s.ipam, ids, true)
	for _, l := range leaks {
		t.Errorf("leak: %s", l)
	}
	if len(leaks) == 0 {
		snaps := framework.Snapshots(t, s.d.Env.ContainerdAddress, s.d.Opts.Namespace, "")
		t.Logf("leak check of %d sandbox(es): clean (netns mounts 0, IP files 0, containerd containers 0, active snapshots 0 [committed image layers %d], per-ID paths 0, iptables rules 0)",
			len(ids), snaps.Committed)
	}
}

func sbCtx(t *testing.T) context.Context { return framework.RPCContext(t) }

func runPod(t *testing.T, rc runtimeapi.RuntimeServiceClient, cfg *runtimeapi.PodSandboxConfig, handler string) string {
	t.Helper()
	resp, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s): %v", cfg.GetMetadata().GetName(), err)
	}
	if len(resp.GetPodSandboxId()) != 64 {
		t.Fatalf("RunPodSandbox returned id %q", resp.GetPodSandboxId())
	}
	return resp.GetPodSandboxId()
}

func stopPod(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string) {
	t.Helper()
	if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("StopPodSandbox(%s): %v", id, err)
	}
}

func removePod(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string) {
	t.Helper()
	if _, err := rc.RemovePodSandbox(sbCtx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox(%s): %v", id, err)
	}
}

func sbWantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got code %s (%v), want %s", what, got, err, want)
	}
	t.Logf("%s: %s: %s", what, want, status.Convert(err).Message())
}

// checkPodIP checks the pod IP is in the stack's subnet (CNI_SUBNET, when set)
// and that host-local recorded exactly that IP for the pod.
func (s *sbEnv) checkPodIP(t *testing.T, id, ip string) {
	t.Helper()
	parsed := net.ParseIP(ip)
	if parsed == nil || parsed.To4() == nil {
		t.Fatalf("pod IP %q is not an IPv4 address", ip)
	}
	if sub := os.Getenv("CNI_SUBNET"); sub != "" {
		if _, n, err := net.ParseCIDR(sub); err == nil && !n.Contains(parsed) {
			t.Errorf("pod IP %s is not in the CNI subnet %s", ip, sub)
		}
	}
	files := framework.IPAMFilesFor(t, s.ipam, id)
	if len(files) != 1 || filepath.Base(files[0]) != ip {
		t.Errorf("host-local allocations for %s = %v, want one file named %s", id[:12], files, ip)
	}
}

var httpc = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(url string) (string, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitHTTP polls url until it answers want, or fails after timeout.
func waitHTTP(t *testing.T, url, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		body, err := httpGet(url)
		if err == nil && strings.Contains(body, want) {
			t.Logf("GET %s: %q", url, strings.TrimSpace(body))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: body %q, err %v; want %q", url, body, err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// serveInPod serves an HTTP page saying `says` on port inside the pod's netns.
func serveInPod(t *testing.T, nsPath string, port int, says string) {
	t.Helper()
	l := framework.ListenInNetNS(t, nsPath, "tcp", fmt.Sprintf(":%d", port))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s (from %s)\n", says, r.RemoteAddr)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// TestSandboxPodNetwork: a pod gets an IP on the CNI bridge, the host reaches
// a listener in the pod's netns on that IP and through a hostPort (127.0.0.1
// and a host address); stop releases the IP, the netns and the port mapping.
func TestSandboxPodNetwork(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	hostPort := framework.FreeTCPPort(t, 18000, 19000)
	id := runPod(t, rc, framework.PodConfig("net", framework.WithPortMapping(int32(hostPort), 8080)), "")

	st, info := framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state = %v, want READY", st.GetState())
	}
	ip := st.GetNetwork().GetIp()
	t.Logf("pod %s: IP %s, netns %s, pause pid %d, hostPort %d", id[:12], ip, info.NetNamespacePath, info.Pid, hostPort)
	s.checkPodIP(t, id, ip)
	wantDir := filepath.Join(s.d.StateDir(), "netns", id) + "/"
	if !strings.HasPrefix(info.NetNamespacePath, wantDir) {
		t.Errorf("netNamespacePath = %q, want under %s", info.NetNamespacePath, wantDir)
	}
	if mounts := framework.NetNSMounts(t, s.d.StateDir()); !slices.Equal(mounts, []string{info.NetNamespacePath}) {
		t.Errorf("netns mounts under the state dir = %v, want [%s]", mounts, info.NetNamespacePath)
	}
	// The pause process lives in that namespace.
	if a, b := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", info.Pid)), nsInode(t, info.NetNamespacePath); a != b {
		t.Errorf("pause process netns %d != mounted netns %d", a, b)
	}

	serveInPod(t, info.NetNamespacePath, 8080, "hello "+id[:12])
	waitHTTP(t, fmt.Sprintf("http://%s:8080/", ip), "hello "+id[:12], 10*time.Second)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort), "hello "+id[:12], 10*time.Second)
	if hip := framework.HostIPv4(os.Getenv("CNI_BRIDGE"), "cricbr0", "docker0"); hip != "" {
		waitHTTP(t, fmt.Sprintf("http://%s:%d/", hip, hostPort), "hello "+id[:12], 10*time.Second)
	}
	if rules := framework.IptablesRulesFor(t, id); len(rules) == 0 {
		t.Errorf("no portmap/masquerade rules mention %s while the pod runs", id[:12])
	}

	stopPod(t, rc, id)
	if got := framework.IPAMFilesFor(t, s.ipam, id); len(got) != 0 {
		t.Errorf("after stop: IP allocations %v", got)
	}
	if got := framework.NetNSMounts(t, s.d.StateDir()); len(got) != 0 {
		t.Errorf("after stop: netns mounts %v", got)
	}
	if rules := framework.IptablesRulesFor(t, id); len(rules) != 0 {
		t.Errorf("after stop: rules still mention the pod: %v", rules)
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); err == nil {
		t.Errorf("after stop: hostPort %d still answers %q", hostPort, body)
	}
	st, info = framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st.GetNetwork().GetIp() != "" || !info.NetNamespaceClosed {
		t.Errorf("after stop: state %v, ip %q, netNamespaceClosed %v; want NOTREADY, no IP, closed", st.GetState(), st.GetNetwork().GetIp(), info.NetNamespaceClosed)
	}
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

// TestSandboxLoopbackUpWithoutPlugin: a pod without host ports or bandwidth
// limits is set up without the loopback, portmap and bandwidth plugin runs
// (lo is brought up in-process, portmap and bandwidth would do nothing for
// it): lo is up in the pod's netns (a new netns has it down), the pod
// answers on its IP, and stop leaves no address, rule or mount behind.
func TestSandboxLoopbackUpWithoutPlugin(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	id := runPod(t, rc, framework.PodConfig("lo"), "")
	st, info := framework.PodStatus(t, rc, id)
	ip := st.GetNetwork().GetIp()
	s.checkPodIP(t, id, ip)
	out, err := exec.Command("nsenter", "--net="+info.NetNamespacePath, "ip", "-o", "link", "show", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show lo in the pod: %v: %s", err, out)
	}
	if !strings.Contains(string(out), ",UP") {
		t.Errorf("lo in the pod is not up: %s", out)
	}
	serveInPod(t, info.NetNamespacePath, 8080, "hello "+id[:12])
	waitHTTP(t, fmt.Sprintf("http://%s:8080/", ip), "hello "+id[:12], 10*time.Second)

	stopPod(t, rc, id)
	if got := framework.IPAMFilesFor(t, s.ipam, id); len(got) != 0 {
		t.Errorf("after stop: IP allocations %v", got)
	}
	if rules := framework.IptablesRulesFor(t, id); len(rules) != 0 {
		t.Errorf("after stop: rules still mention the pod: %v", rules)
	}
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// TestSandboxContainerServesOnPodIP: a busybox httpd container in the pod
// answers on the pod IP and on the pod's hostPort, as kubelet would run it.
func TestSandboxContainerServesOnPodIP(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	if _, err := s.d.ImageClient().PullImage(sbCtx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatalf("PullImage(%s): %v", image, err)
	}
	hostPort := framework.FreeTCPPort(t, 18000, 19000)
	pod := framework.PodConfig("httpd", framework.WithPortMapping(int32(hostPort), 80))
	id := runPod(t, rc, pod, "")
	st, _ := framework.PodStatus(t, rc, id)
	ip := st.GetNetwork().GetIp()
	s.checkPodIP(t, id, ip)

	cc, err := rc.CreateContainer(sbCtx(t), &runtimeapi.CreateContainerRequest{
		PodSandboxId: id,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "httpd"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command: []string{"sh", "-c",
				"mkdir -p /www && echo hello-from-container-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: pod.GetLinux().GetSecurityContext().GetNamespaceOptions(),
			}},
		},
		SandboxConfig: pod,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	cid := cc.GetContainerId()
	if _, err := rc.StartContainer(sbCtx(t), &runtimeapi.StartContainerRequest{ContainerId: cid}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	want := "hello-from-container-httpd"
	waitHTTP(t, fmt.Sprintf("http://%s/", ip), want, 20*time.Second)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", hostPort), want, 10*time.Second)

	// Stop the pod with its container running (kubelet may do that), then remove it.
	stopPod(t, rc, id)
	cs, err := rc.ContainerStatus(sbCtx(t), &runtimeapi.ContainerStatusRequest{ContainerId: cid})
	if err != nil {
		t.Fatalf("ContainerStatus after pod stop: %v", err)
	}
	if cs.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("container state after pod stop = %v, want EXITED", cs.GetStatus().GetState())
	}
	removePod(t, rc, id)
	if _, err := rc.ContainerStatus(sbCtx(t), &runtimeapi.ContainerStatusRequest{ContainerId: cid}); status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStatus after pod removal: %v, want NotFound", err)
	}
	s.assertNoLeaks(t, id, cid)
}

// TestSandboxHostNetwork: a host-network pod gets no netns of its own, no IP
// allocation, and its pause process shares the host's network namespace.
func TestSandboxHostNetwork(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	id := runPod(t, rc, framework.PodConfig("hostnet", framework.WithHostNetwork()), "")
	st, info := framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("state = %v, want READY", st.GetState())
	}
	if info.NetNamespacePath != "" {
		t.Errorf("netNamespacePath = %q, want empty", info.NetNamespacePath)
	}
	if got := st.GetLinux().GetNamespaces().GetOptions().GetNetwork(); got != runtimeapi.NamespaceMode_NODE {
		t.Errorf("status network mode = %v, want NODE", got)
	}
	if ip := st.GetNetwork().GetIp(); ip != "" {
		t.Errorf("status IP = %q, want empty for a host-network pod", ip)
	}
	if m := framework.NetNSMounts(t, s.d.StateDir()); len(m) != 0 {
		t.Errorf("netns mounts under the state dir: %v, want none", m)
	}
	if f := framework.IPAMFilesFor(t, s.ipam, id); len(f) != 0 {
		t.Errorf("IP allocations for a host-network pod: %v", f)
	}
	if e := framework.DirEntries(t, filepath.Join(s.d.StateDir(), "netns")); len(e) != 0 {
		t.Errorf("netns dirs: %v", e)
	}
	if a, b := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", info.Pid)), nsInode(t, "/proc/self/ns/net"); a != b {
		t.Errorf("pause process netns %d, host netns %d: want the same", a, b)
	}
	stopPod(t, rc, id)
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

// TestSandboxStopRemoveIdempotent: second stop and remove succeed, stop and
// remove of unknown IDs succeed, status of a removed sandbox is NotFound.
func TestSandboxStopRemoveIdempotent(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	id := runPod(t, rc, framework.PodConfig("idem"), "")
	stopPod(t, rc, id)
	stopPod(t, rc, id)
	if st, _ := framework.PodStatus(t, rc, id); st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after two stops: state %v, want NOTREADY", st.GetState())
	}
	removePod(t, rc, id)
	removePod(t, rc, id)
	_, err := rc.PodSandboxStatus(sbCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	sbWantCode(t, "PodSandboxStatus of a removed sandbox", err, codes.NotFound)
	if _, listed := framework.ListedPodState(t, rc, id); listed {
		t.Error("removed sandbox is still listed")
	}
	// Stop after remove, and stop/remove of IDs that never existed.
	stopPod(t, rc, id)
	unknown := strings.Repeat("ab", 32)
	removePod(t, rc, unknown)
	if _, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: unknown}); err != nil {
		t.Errorf("StopPodSandbox(unknown id): %v (CRI: idempotent once resources are reclaimed)", err)
	}

	// Remove without stop first (kubelet's force path) is also complete.
	id2 := runPod(t, rc, framework.PodConfig("idem-nostop"), "")
	removePod(t, rc, id2)
	removePod(t, rc, id2)
	_, err = rc.PodSandboxStatus(sbCtx(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id2})
	sbWantCode(t, "PodSandboxStatus after remove without stop", err, codes.NotFound)
	s.assertNoLeaks(t, id, id2)
}

// TestSandboxRunSameMetadataTwice: the second RunPodSandbox with the same
// metadata is AlreadyExists and leaves nothing; another attempt number is a
// new pod; the name is free again after removal.
func TestSandboxRunSameMetadataTwice(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	cfg := framework.PodConfig("twice")
	id := runPod(t, rc, cfg, "")
	before := framework.DirEntries(t, filepath.Join(s.d.RootDir(), "sandboxes"))
	_, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	sbWantCode(t, "RunPodSandbox with the same metadata", err, codes.AlreadyExists)
	if !strings.Contains(status.Convert(err).Message(), id) {
		t.Errorf("AlreadyExists message %q does not name the holder %s", status.Convert(err).Message(), id)
	}
	if ids := framework.ListPodIDs(t, rc); !slices.Equal(ids, []string{id}) {
		t.Errorf("listed sandboxes = %v, want only %s", ids, id)
	}
	if after := framework.DirEntries(t, filepath.Join(s.d.RootDir(), "sandboxes")); !slices.Equal(before, after) {
		t.Errorf("sandbox dirs changed by the failed run: %v -> %v", before, after)
	}
	if n := len(framework.NetNSMounts(t, s.d.StateDir())); n != 1 {
		t.Errorf("netns mounts = %d, want 1", n)
	}
	if c := framework.ContainerdContainers(t, s.d.Env.ContainerdAddress, s.d.Opts.Namespace); len(c) != 1 {
		t.Errorf("containerd containers = %v, want 1", c)
	}

	next := framework.PodConfig("twice")
	next.Metadata.Uid = cfg.Metadata.Uid
	next.Metadata.Attempt = 1
	id1 := runPod(t, rc, next, "")
	if id1 == id {
		t.Fatal("attempt 1 got the same ID")
	}
	for _, x := range []string{id, id1} {
		stopPod(t, rc, x)
		removePod(t, rc, x)
	}
	id2 := runPod(t, rc, cfg, "")
	stopPod(t, rc, id2)
	removePod(t, rc, id2)
	s.assertNoLeaks(t, id, id1, id2)
}

// TestSandboxUnknownRuntimeHandler: an unknown handler is InvalidArgument and
// nothing is made (no dirs, netns, IP, containerd container); the name is
// still free.
func TestSandboxUnknownRuntimeHandler(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	cfg := framework.PodConfig("badhandler")
	_, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "no-such-handler"})
	sbWantCode(t, "RunPodSandbox(runtime handler no-such-handler)", err, codes.InvalidArgument)
	if ids := framework.ListPodIDs(t, rc); len(ids) != 0 {
		t.Errorf("listed sandboxes: %v", ids)
	}
	for _, dir := range []string{
		filepath.Join(s.d.RootDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "netns"),
	} {
		if e := framework.DirEntries(t, dir); len(e) != 0 {
			t.Errorf("%s: %v", dir, e)
		}
	}
	s.assertNoLeaks(t)
	// The failed run did not keep the name.
	id := runPod(t, rc, cfg, "")
	stopPod(t, rc, id)
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

// TestSandboxPauseKilledBecomesNotReady: SIGKILL of the pause process makes the
// sandbox NOTREADY by itself (containerd's exit event), with no RPC that
// could trigger a check; stop and remove then clean everything.
func TestSandboxPauseKilledBecomesNotReady(t *testing.T) {
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	id := runPod(t, rc, framework.PodConfig("pausekill"), "")
	st, info := framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || info.Pid == 0 {
		t.Fatalf("state %v, pid %d; want READY with a pid", st.GetState(), info.Pid)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", info.Pid))
	t.Logf("killing pause process %d (%s)", info.Pid, strings.TrimSpace(string(comm)))
	if err := syscall.Kill(int(info.Pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := framework.WaitPodState(t, rc, id, runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 30*time.Second)
	t.Logf("ListPodSandbox reported NOTREADY %s after the kill", took.Round(time.Millisecond))
	st, info = framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || info.Pid != 0 {
		t.Errorf("PodSandboxStatus: state %v, pid %d; want NOTREADY, pid 0", st.GetState(), info.Pid)
	}
	if st.GetNetwork().GetIp() != "" {
		t.Errorf("NOTREADY sandbox reports IP %q", st.GetNetwork().GetIp())
	}
	// The netns and IP stay until StopPodSandbox (kubelet's job).
	if f := framework.IPAMFilesFor(t, s.ipam, id); len(f) != 1 {
		t.Errorf("before stop: IP allocations %v, want 1", f)
	}
	stopPod(t, rc, id)
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

// TestSandboxPauseExitsAtOnce: with a sandbox image whose process exits at
// once (busybox's sh with no stdin), RunPodSandbox succeeds or fails, but a
// sandbox it returns must end NOTREADY, never stay READY with a dead pause
// process (the exit event may arrive before RunPodSandbox marks it ready).
func TestSandboxPauseExitsAtOnce(t *testing.T) {
	const image = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	s := startSandboxDaemonOpts(t, nil, framework.DaemonOptions{SandboxImage: image})
	rc := s.rc()
	var ids []string
	for i := 0; i < 10; i++ {
		resp, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig(fmt.Sprintf("exits-%d", i))})
		if err != nil {
			t.Logf("RunPodSandbox %d: %v", i, err)
			continue
		}
		ids = append(ids, resp.GetPodSandboxId())
	}
	for _, id := range ids {
		took := framework.WaitPodState(t, rc, id, runtimeapi.PodSandboxState_SANDBOX_NOTREADY, 15*time.Second)
		_, info := framework.PodStatus(t, rc, id)
		if info.Pid != 0 {
			t.Errorf("%s: NOTREADY with pid %d", id[:12], info.Pid)
		}
		t.Logf("%s NOTREADY after %s more", id[:12], took.Round(time.Millisecond))
	}
	for _, id := range ids {
		stopPod(t, rc, id)
		removePod(t, rc, id)
	}
	s.assertNoLeaks(t, ids...)
}

// TestSandboxNetworkReadyFollowsCNIConfig: with its CNI config removed the
// daemon reports NetworkReady=false with a reason, refuses pod-network
// sandboxes without leaking, still runs host-network pods; with the config
// back it reports NetworkReady=true and runs pods again.
func TestSandboxNetworkReadyFollowsCNIConfig(t *testing.T) {
	confDir := t.TempDir()
	var saved map[string][]byte
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		saved = copyCNIConf(t, env.CNIConfDir, confDir)
		env.CNIConfDir = confDir
	})
	rc := s.rc()

	waitNet := func(want bool) *runtimeapi.RuntimeCondition { return waitNetworkReady(t, rc, want) }
	waitNet(true)

	removeCNIConf(t, confDir, saved)
	c := waitNet(false)
	t.Logf("without CNI config: NetworkReady=false reason %q message %q", c.GetReason(), c.GetMessage())
	if c.GetReason() == "" || c.GetMessage() == "" {
		t.Errorf("NetworkReady=false without reason/message: %+v", c)
	}
	_, err := rc.RunPodSandbox(sbCtx(t), &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig("nonet")})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded without a CNI config")
	}
	t.Logf("RunPodSandbox without CNI config: %s: %s", status.Code(err), status.Convert(err).Message())
	if ids := framework.ListPodIDs(t, rc); len(ids) != 0 {
		t.Errorf("listed sandboxes after the failed run: %v", ids)
	}
	for _, dir := range []string{filepath.Join(s.d.RootDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "netns")} {
		if e := framework.DirEntries(t, dir); len(e) != 0 {
			t.Errorf("after the failed run, %s: %v", dir, e)
		}
	}
	s.assertNoLeaks(t)

	// Host-network pods (e.g. the CNI daemonset itself) run without CNI.
	hid := runPod(t, rc, framework.PodConfig("hostnet-nocni", framework.WithHostNetwork()), "")
	stopPod(t, rc, hid)
	removePod(t, rc, hid)

	restoreCNIConf(t, confDir, saved)
	c = waitNet(true)
	t.Logf("with the config restored: NetworkReady=true (%q)", c.GetReason())
	id := runPod(t, rc, framework.PodConfig("net-again"), "")
	st, _ := framework.PodStatus(t, rc, id)
	s.checkPodIP(t, id, st.GetNetwork().GetIp())
	stopPod(t, rc, id)
	removePod(t, rc, id)
	s.assertNoLeaks(t, id, hid)
}

// TestSandboxStopRetriesFailedTeardown: StopPodSandbox fails while CNI DEL
// cannot run (config removed) and keeps the netns and the IP; once the
// config is back, the next StopPodSandbox finishes the teardown (including
// the bridge plugin's masquerade rules, which need the netns) and removal
// leaves nothing.
func TestSandboxStopRetriesFailedTeardown(t *testing.T) {
	confDir := t.TempDir()
	var saved map[string][]byte
	s := startSandboxDaemon(t, func(env *framework.StackEnv) {
		saved = copyCNIConf(t, env.CNIConfDir, confDir)
		env.CNIConfDir = confDir
	})
	rc := s.rc()
	hostPort := framework.FreeTCPPort(t, 18000, 19000)
	id := runPod(t, rc, framework.PodConfig("retry-teardown", framework.WithPortMapping(int32(hostPort), 8080)), "")
	_, info := framework.PodStatus(t, rc, id)

	removeCNIConf(t, confDir, saved)
	waitNetworkReady(t, rc, false)
	_, err := rc.StopPodSandbox(sbCtx(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	if err == nil {
		t.Fatal("StopPodSandbox succeeded although CNI DEL cannot run")
	}
	t.Logf("StopPodSandbox without CNI config: %s: %s", status.Code(err), status.Convert(err).Message())
	_, err = rc.RemovePodSandbox(sbCtx(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	if err == nil {
		t.Fatal("RemovePodSandbox succeeded although CNI DEL cannot run (the IP would leak)")
	}
	st, info2 := framework.PodStatus(t, rc, id)
	if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after the failed stop: state %v, want NOTREADY", st.GetState())
	}
	if info2.NetNamespaceClosed || !slices.Equal(framework.NetNSMounts(t, s.d.StateDir()), []string{info.NetNamespacePath}) {
		t.Errorf("after the failed stop the netns must stay for the retry: closed=%v mounts=%v", info2.NetNamespaceClosed, framework.NetNSMounts(t, s.d.StateDir()))
	}
	if f := framework.IPAMFilesFor(t, s.ipam, id); len(f) != 1 {
		t.Errorf("after the failed stop: IP allocations %v, want 1", f)
	}

	restoreCNIConf(t, confDir, saved)
	waitNetworkReady(t, rc, true)
	stopPod(t, rc, id)
	removePod(t, rc, id)
	s.assertNoLeaks(t, id)
}

// TestSandboxConcurrentLifecycle: pods run, stop and remove in parallel
// (with duplicate concurrent stop/remove calls on each pod, as kubelet's
// workers and GC may issue) get distinct IPs and leave nothing behind.
func TestSandboxConcurrentLifecycle(t *testing.T) {
	const workers, perWorker = 4, 5
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	if _, err := s.d.ImageClient().PullImage(sbCtx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: s.d.Opts.SandboxImage}}); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	type result struct {
		id, ip string
		err    error
	}
	results := make(chan result, workers*perWorker)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := 0; i < perWorker; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				r := result{}
				resp, err := rc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: framework.PodConfig(fmt.Sprintf("par-%d-%d", w, i))})
				if err != nil {
					r.err = fmt.Errorf("run: %w", err)
					results <- r
					cancel()
					continue
				}
				r.id = resp.GetPodSandboxId()
				if st, err := rc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: r.id}); err == nil {
					r.ip = st.GetStatus().GetNetwork().GetIp()
				}
				errs := make(chan error, 4)
				for k := 0; k < 2; k++ {
					go func() {
						_, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: r.id})
						if err != nil {
							err = fmt.Errorf("stop: %w", err)
						}
						errs <- err
					}()
				}
				for k := 0; k < 2; k++ {
					go func() {
						_, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: r.id})
						if err != nil {
							err = fmt.Errorf("remove: %w", err)
						}
						errs <- err
					}()
				}
				for k := 0; k < 4; k++ {
					if err := <-errs; err != nil && r.err == nil {
						r.err = err
					}
				}
				results <- r
				cancel()
			}
		}(w)
	}
	var ids []string
	ips := map[string]string{}
	for n := 0; n < workers*perWorker; n++ {
		r := <-results
		if r.id != "" {
			ids = append(ids, r.id)
		}
		if r.err != nil {
			t.Errorf("pod %.12s: %v", r.id, r.err)
		}
		if r.ip == "" {
			t.Errorf("pod %.12s: no IP", r.id)
		} else if other, dup := ips[r.ip]; dup {
			t.Errorf("pods %.12s and %.12s both got IP %s", other, r.id, r.ip)
		} else {
			ips[r.ip] = r.id
		}
	}
	t.Logf("%d pods in %d parallel workers, %d distinct IPs", len(ids), workers, len(ips))
	if left := framework.ListPodIDs(t, rc); len(left) != 0 {
		t.Errorf("still listed: %v", left)
	}
	s.assertNoLeaks(t, ids...)
}

// TestSandboxLifecycleCyclesLeaveNothing: 50 run/stop/remove cycles leave no
// netns mount, IP allocation, containerd container, active snapshot or
// per-ID directory behind. Cycle times are logged, not asserted.
func TestSandboxLifecycleCyclesLeaveNothing(t *testing.T) {
	const cycles = 50
	s := startSandboxDaemon(t, nil)
	rc := s.rc()
	// Pull the pause image first so that the first cycle does not time a pull.
	if _, err := s.d.ImageClient().PullImage(sbCtx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: s.d.Opts.SandboxImage}}); err != nil {
		t.Fatalf("PullImage(%s): %v", s.d.Opts.SandboxImage, err)
	}
	var run, stop, remove []time.Duration
	var ids []string
	seenIP := map[string]int{}
	for i := 0; i < cycles; i++ {
		cfg := framework.PodConfig(fmt.Sprintf("cycle-%02d", i))
		t0 := time.Now()
		id := runPod(t, rc, cfg, "")
		t1 := time.Now()
		ids = append(ids, id)
		st, _ := framework.PodStatus(t, rc, id)
		if st.GetState() != runtimeapi.PodSandboxState_SANDBOX_READY || st.GetNetwork().GetIp() == "" {
			t.Fatalf("cycle %d: state %v ip %q", i, st.GetState(), st.GetNetwork().GetIp())
		}
		seenIP[st.GetNetwork().GetIp()]++
		t2 := time.Now()
		stopPod(t, rc, id)
		t3 := time.Now()
		removePod(t, rc, id)
		t4 := time.Now()
		run, stop, remove = append(run, t1.Sub(t0)), append(stop, t3.Sub(t2)), append(remove, t4.Sub(t3))
	}
	t.Logf("%d cycles: run avg %s (median %s, max %s), stop avg %s (median %s, max %s), remove avg %s (median %s, max %s); %d distinct pod IPs",
		cycles, avg(run), median(run), slices.Max(run), avg(stop), median(stop), slices.Max(stop), avg(remove), median(remove), slices.Max(remove), len(seenIP))
	if ids := framework.ListPodIDs(t, rc); len(ids) != 0 {
		t.Errorf("sandboxes still listed: %v", ids)
	}
	for _, dir := range []string{filepath.Join(s.d.RootDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "sandboxes"), filepath.Join(s.d.StateDir(), "netns")} {
		if e := framework.DirEntries(t, dir); len(e) != 0 {
			t.Errorf("%s still holds %d entries: %v", dir, len(e), e)
		}
	}
	s.assertNoLeaks(t, ids...)
}

func avg(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return (sum / time.Duration(len(ds))).Round(100 * time.Microsecond)
}

func median(ds []time.Duration) time.Duration {
	c := slices.Clone(ds)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2].Round(100 * time.Microsecond)
}

// copyCNIConf copies the CNI config files of src into dst and returns them.
func copyCNIConf(t *testing.T, src, dst string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	saved := map[string][]byte{}
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); ext == ".conflist" || ext == ".conf" || ext == ".json" {
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			saved[e.Name()] = b
		}
	}
	if len(saved) == 0 {
		t.Fatalf("no CNI config in %s", src)
	}
	restoreCNIConf(t, dst, saved)
	return saved
}

func restoreCNIConf(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func removeCNIConf(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for f := range files {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitNetworkReady polls Status until NetworkReady is want (15s at most).
func waitNetworkReady(t *testing.T, rc runtimeapi.RuntimeServiceClient, want bool) *runtimeapi.RuntimeCondition {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := rc.Status(sbCtx(t), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		var c *runtimeapi.RuntimeCondition
		for _, x := range resp.GetStatus().GetConditions() {
			if x.GetType() == runtimeapi.NetworkReady {
				c = x
			}
		}
		if c == nil {
			t.Fatal("Status has no NetworkReady condition")
		}
		if c.GetStatus() == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("NetworkReady = %v (%s: %s), want %v", c.GetStatus(), c.GetReason(), c.GetMessage(), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

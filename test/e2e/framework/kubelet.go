package framework

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"sigs.k8s.io/yaml"
)

// DefaultKubeletBin is where the node e2e install step caches kubelet.
const DefaultKubeletBin = "/opt/node-e2e/bin/kubelet"

// KubeletBinary returns $KUBELET_BIN, else DefaultKubeletBin, and skips the
// test when neither exists: the kubelet-driven tests are opt-in.
func KubeletBinary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("KUBELET_BIN")
	if bin == "" {
		bin = DefaultKubeletBin
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("kubelet e2e: no kubelet binary at %s (%v); set KUBELET_BIN or build kubelet with the node e2e install step", bin, err)
	}
	for _, tool := range []string{"unshare", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("kubelet e2e: %s not found: %v", tool, err)
		}
	}
	return bin
}

// KubeletOptions configures a standalone kubelet (no API server: static pods
// only).
type KubeletOptions struct {
	// Config holds KubeletConfiguration fields (top-level keys, as in the
	// YAML file) that replace the defaults StartKubelet writes.
	Config map[string]any
	// FeatureGates are merged into the configuration's featureGates.
	FeatureGates map[string]bool
	// ExtraArgs are appended to kubelet's command line.
	ExtraArgs []string
	// RuntimeEndpoint, when set, is the CRI endpoint kubelet uses (and the
	// test's lookups and cleanup go to) instead of the daemon's; the daemon
	// may then be nil (e.g. a bootstrap containerd's built-in CRI).
	RuntimeEndpoint string
}

// Kubelet is a standalone kubelet process the test started against a
// private daemon. It runs in its own mount namespace (slave propagation)
// where the paths kubelet hard-codes (/var/lib/kubelet/device-plugins and
// /var/log/containers) are bind mounts of private directories, so that it
// neither disturbs another kubelet on the machine nor leaves files behind;
// its own mounts (kubelet makes --root-dir rshared) vanish with it.
// Its cgroup root is a private cgroup (/cri-e2e-kubelet-<suffix>), so that
// its QoS and orphaned-pod cgroup management never touches another kubelet's
// /kubepods tree.
type Kubelet struct {
	t           testing.TB
	Bin         string
	Dir         string // everything the kubelet writes
	RootDir     string // --root-dir
	ManifestDir string // staticPodPath
	PodLogsDir  string // podLogsDir
	ConfigPath  string
	NodeName    string // --hostname-override: static pods are named "<pod>-<NodeName>"
	CgroupRoot  string // cgroupRoot, e.g. /cri-e2e-kubelet-1a2b3c4d
	Daemon      *Daemon
	Endpoint    string         // the CRI endpoint kubelet uses
	Config      map[string]any // the configuration written to ConfigPath

	rc runtimeapi.RuntimeServiceClient // for Endpoint when Daemon is nil

	extraArgs []string
	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	starts    int
	logStart  int64    // size of the log when the current process started
	madeDirs  []string // host mount points this kubelet created
}

// StartKubelet starts a standalone kubelet on d's CRI socket. At the end of
// the test it stops the kubelet, removes every pod it left in d, and removes
// its directories and cgroups. Register it after d (cleanups run last-in
// first-out, so the kubelet stops before the daemon).
func StartKubelet(t testing.TB, d *Daemon, opts KubeletOptions) *Kubelet {
	t.Helper()
	bin := KubeletBinary(t)
	dir, err := os.MkdirTemp("", "cri-e2e-kubelet-")
	if err != nil {
		t.Fatal(err)
	}
	suffix := RandomSuffix()
	k := &Kubelet{
		t: t, Bin: bin, Dir: dir,
		RootDir:     filepath.Join(dir, "root"),
		ManifestDir: filepath.Join(dir, "manifests"),
		PodLogsDir:  filepath.Join(dir, "pods"),
		ConfigPath:  filepath.Join(dir, "kubelet-config.yaml"),
		NodeName:    "e2e-node-" + suffix,
		CgroupRoot:  "/cri-e2e-kubelet-" + suffix,
		Daemon:      d,
		extraArgs:   opts.ExtraArgs,
	}
	if opts.RuntimeEndpoint != "" {
		k.Endpoint = opts.RuntimeEndpoint
		k.rc = runtimeapi.NewRuntimeServiceClient(DialCRI(t, opts.RuntimeEndpoint))
	} else {
		k.Endpoint = d.Endpoint
	}
	for _, p := range []string{k.RootDir, k.ManifestDir, k.PodLogsDir, k.devicePluginsDir(), k.containerLogsDir()} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(k.cleanup)
	if err := k.makeCgroupRoot(); err != nil {
		t.Fatalf("kubelet cgroup root: %v", err)
	}

	cfg := map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               k.CgroupRoot,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"containerRuntimeEndpoint": k.Endpoint,
		"imageServiceEndpoint":     k.Endpoint,
		"staticPodPath":            k.ManifestDir,
		"podLogsDir":               k.PodLogsDir,
		"fileCheckFrequency":       "1s",
		"syncFrequency":            "10s",
		"podCIDR":                  "10.100.0.0/24",
		// No server: nothing listens on 10250/10255/10248, so any number of
		// kubelets can run side by side.
		"enableServer": false,
		"healthzPort":  0,
		"readOnlyPort": 0,
		// Standalone: no API server to ask.
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": true},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization": map[string]any{"mode": "AlwaysAllow"},
		// This machine is shared: never evict on its (unrelated) usage.
		"evictionHard": map[string]string{
			"memory.available":  "1Mi",
			"nodefs.available":  "1%",
			"nodefs.inodesFree": "1%",
			"imagefs.available": "1%",
		},
		"serializeImagePulls":  false,
		"volumeStatsAggPeriod": "10s",
	}
	maps.Copy(cfg, opts.Config)
	if len(opts.FeatureGates) > 0 {
		fg := map[string]bool{}
		if old, ok := cfg["featureGates"].(map[string]bool); ok {
			maps.Copy(fg, old)
		}
		maps.Copy(fg, opts.FeatureGates)
		cfg["featureGates"] = fg
	}
	k.Config = cfg
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.ConfigPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	k.Start()
	return k
}

func (k *Kubelet) devicePluginsDir() string { return filepath.Join(k.Dir, "device-plugins") }
func (k *Kubelet) containerLogsDir() string { return filepath.Join(k.Dir, "containers") }

// LogPath is kubelet's combined stdout/stderr (appended across restarts).
func (k *Kubelet) LogPath() string { return filepath.Join(k.Dir, "kubelet.log") }

// hostDirs are the paths kubelet hard-codes, bind-mounted from private
// directories in kubelet's mount namespace.
func (k *Kubelet) hostDirs() [][2]string {
	return [][2]string{
		{k.devicePluginsDir(), "/var/lib/kubelet/device-plugins"},
		{k.containerLogsDir(), "/var/log/containers"},
	}
}

// Start starts kubelet (again) with the same directories and configuration.
func (k *Kubelet) Start() {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd != nil {
		k.t.Fatal("kubelet already running")
	}
	// Mount points must exist on the host; they are kubelet's standard
	// directories, left empty.
	script := "set -e\n"
	for _, hd := range k.hostDirs() {
		k.makeHostDir(hd[1])
		script += fmt.Sprintf("mount --bind %q %q\n", hd[0], hd[1])
	}
	script += `exec "$0" "$@"` + "\n"
	args := []string{"--mount", "--propagation", "slave", "--", "sh", "-c", script, k.Bin,
		"--config", k.ConfigPath,
		"--root-dir", k.RootDir,
		"--cert-dir", filepath.Join(k.RootDir, "pki"),
		"--hostname-override", k.NodeName,
		// Empty: else kubelet moves every process of the root cgroup into /system.
		"--system-cgroups=",
		"--v=4",
	}
	args = append(args, k.extraArgs...)
	logf, err := os.OpenFile(k.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	k.starts++
	if st, err := logf.Stat(); err == nil {
		k.logStart = st.Size()
	}
	fmt.Fprintf(logf, "=== kubelet start #%d at %s\n", k.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("unshare", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Same PID from unshare to kubelet (exec all the way), so the death
	// signal reaches kubelet if the test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		k.t.Fatalf("starting kubelet: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	k.cmd, k.done = cmd, done
}

// makeHostDir creates dir and its missing parents, remembering them so
// that cleanup removes them again (when still empty).
func (k *Kubelet) makeHostDir(dir string) {
	var missing []string
	for p := dir; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		k.t.Fatal(err)
	}
	k.madeDirs = append(k.madeDirs, missing...) // deepest first
}

// Pid is the running kubelet's PID (0 when stopped).
func (k *Kubelet) Pid() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		return 0
	}
	return k.cmd.Process.Pid
}

// Running reports whether the kubelet process is alive.
func (k *Kubelet) Running() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		return false
	}
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// Stop terminates kubelet (SIGTERM, SIGKILL after 15s) and waits for it.
func (k *Kubelet) Stop() { k.stop(syscall.SIGTERM) }

// Kill kills kubelet with SIGKILL (no shutdown of any kind) and waits for it.
func (k *Kubelet) Kill() { k.stop(syscall.SIGKILL) }

func (k *Kubelet) stop(sig syscall.Signal) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cmd == nil {
		return
	}
	_ = k.cmd.Process.Signal(sig)
	select {
	case <-k.done:
	case <-time.After(15 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
	k.cmd = nil
}

// Restart kills kubelet (SIGKILL) and starts it again.
func (k *Kubelet) Restart() {
	k.t.Helper()
	k.Kill()
	k.Start()
}

// DumpLog writes the tail of kubelet's log to the test log.
func (k *Kubelet) DumpLog(lines int) {
	b, err := os.ReadFile(k.LogPath())
	if err != nil {
		return
	}
	ls := strings.Split(string(b), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	k.t.Logf("kubelet log (%s), last %d lines:\n%s", k.LogPath(), len(ls), strings.Join(ls, "\n"))
}

// LogContains reports whether kubelet's log holds s.
func (k *Kubelet) LogContains(s string) bool {
	b, err := os.ReadFile(k.LogPath())
	return err == nil && strings.Contains(string(b), s)
}

// AddStaticPod writes pod as a manifest into the static pod directory
// (written to a dot file and renamed, so kubelet never reads half of it).
func (k *Kubelet) AddStaticPod(pod *corev1.Pod) {
	k.t.Helper()
	if pod.APIVersion == "" {
		pod.APIVersion, pod.Kind = "v1", "Pod"
	}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	b, err := yaml.Marshal(pod)
	if err != nil {
		k.t.Fatal(err)
	}
	tmp := filepath.Join(k.ManifestDir, "."+pod.Name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.ManifestDir, pod.Name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

// RemoveStaticPod deletes the manifest of the static pod called name.
func (k *Kubelet) RemoveStaticPod(name string) {
	k.t.Helper()
	if err := os.Remove(filepath.Join(k.ManifestDir, name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

// MirrorName is the name kubelet gives a static pod called name (in CRI
// metadata and the io.kubernetes.pod.name label).
func (k *Kubelet) MirrorName(name string) string { return name + "-" + k.NodeName }

// StaticPod is what the runtime holds of a static pod: its ready sandbox and
// its containers by name (the latest attempt of each).
type StaticPod struct {
	Sandbox    *runtimeapi.PodSandbox
	Containers map[string]*runtimeapi.Container
}

// FindStaticPod looks the static pod called name (namespace ns) up in the
// daemon: its ready sandbox, and for each container name the container of
// the highest attempt. ok is false when there is no ready sandbox.
func (k *Kubelet) FindStaticPod(t testing.TB, ns, name string) (StaticPod, bool) {
	t.Helper()
	rc := k.runtimeClient()
	ctx, cancel := callCtx()
	defer cancel()
	labels := map[string]string{"io.kubernetes.pod.name": k.MirrorName(name), "io.kubernetes.pod.namespace": ns}
	pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: labels,
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		t.Fatalf("ListPodSandbox(%v): %v", labels, err)
	}
	if len(pods.GetItems()) == 0 {
		return StaticPod{}, false
	}
	if len(pods.GetItems()) > 1 {
		t.Fatalf("static pod %s/%s: %d ready sandboxes", ns, name, len(pods.GetItems()))
	}
	sp := StaticPod{Sandbox: pods.GetItems()[0], Containers: map[string]*runtimeapi.Container{}}
	ctrs, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: sp.Sandbox.GetId()}})
	if err != nil {
		t.Fatalf("ListContainers(pod %s): %v", sp.Sandbox.GetId(), err)
	}
	for _, c := range ctrs.GetContainers() {
		n := c.GetMetadata().GetName()
		if old, ok := sp.Containers[n]; !ok || c.GetMetadata().GetAttempt() >= old.GetMetadata().GetAttempt() {
			sp.Containers[n] = c
		}
	}
	return sp, true
}

// WaitStaticPod polls until the static pod called name has a ready sandbox
// and cond holds for it (nil cond: every container named in names runs).
func (k *Kubelet) WaitStaticPod(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(StaticPod) bool) StaticPod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last StaticPod
	for {
		if !k.Running() {
			k.DumpLog(80)
			t.Fatalf("kubelet exited while waiting for static pod %s/%s (%s)", ns, name, what)
		}
		sp, ok := k.FindStaticPod(t, ns, name)
		if ok {
			last = sp
			if cond(sp) {
				return sp
			}
		}
		if time.Now().After(deadline) {
			k.DumpLog(80)
			t.Fatalf("static pod %s/%s: %s not reached within %s (last seen: %s)", ns, name, what, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitStaticPodRunning waits until the static pod runs every container
// named in names.
func (k *Kubelet) WaitStaticPodRunning(t testing.TB, ns, name string, timeout time.Duration, names ...string) StaticPod {
	t.Helper()
	return k.WaitStaticPod(t, ns, name, timeout, fmt.Sprintf("containers %v running", names), func(sp StaticPod) bool {
		for _, n := range names {
			c, ok := sp.Containers[n]
			if !ok || c.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
				return false
			}
		}
		return true
	})
}

// WaitStaticPodGone waits until the daemon lists no sandbox (in any state)
// of the static pod called name.
func (k *Kubelet) WaitStaticPodGone(t testing.TB, ns, name string, timeout time.Duration) {
	t.Helper()
	rc := k.runtimeClient()
	deadline := time.Now().Add(timeout)
	labels := map[string]string{"io.kubernetes.pod.name": k.MirrorName(name), "io.kubernetes.pod.namespace": ns}
	for {
		ctx, cancel := callCtx()
		pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: labels}})
		cancel()
		if err != nil {
			t.Fatalf("ListPodSandbox(%v): %v", labels, err)
		}
		if len(pods.GetItems()) == 0 {
			return
		}
		if time.Now().After(deadline) {
			k.DumpLog(80)
			t.Fatalf("static pod %s/%s: %d sandboxes still listed after %s", ns, name, len(pods.GetItems()), timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// String summarises a static pod for failure messages.
func (sp StaticPod) String() string {
	if sp.Sandbox == nil {
		return "no ready sandbox"
	}
	names := slices.Sorted(maps.Keys(sp.Containers))
	var parts []string
	for _, n := range names {
		c := sp.Containers[n]
		parts = append(parts, fmt.Sprintf("%s=%s(attempt %d, %s)", n, shortID(c.GetId()), c.GetMetadata().GetAttempt(), c.GetState()))
	}
	return fmt.Sprintf("sandbox %s: %s", shortID(sp.Sandbox.GetId()), strings.Join(parts, ", "))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ---------------------------------------------------------------------------
// cgroups (v1 hierarchies and the v2 "unified" one of a hybrid host)

const cgroupFS = "/sys/fs/cgroup"

// cgroupHierarchies lists the mounted hierarchies (directories under
// /sys/fs/cgroup; symlinks such as cpu,cpuacct aliases are skipped).
func cgroupHierarchies() ([]string, error) {
	ents, err := os.ReadDir(cgroupFS)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			out = append(out, filepath.Join(cgroupFS, e.Name()))
		}
	}
	return out, nil
}

// makeCgroupRoot creates the kubelet's cgroup root in every hierarchy
// (kubelet refuses a cgroupRoot that does not exist). cpuset needs its cpus
// and mems set before anything can join a child.
func (k *Kubelet) makeCgroupRoot() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	for _, h := range hs {
		p := filepath.Join(h, k.CgroupRoot)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
					return fmt.Errorf("%s: %w", filepath.Join(p, f), err)
				}
			}
		}
	}
	return nil
}

// removeCgroupRoot removes the kubelet's cgroup tree, deepest first (a
// cgroup directory is removed with rmdir once it holds no process).
func (k *Kubelet) removeCgroupRoot() error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range hs {
		root := filepath.Join(h, k.CgroupRoot)
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for i := 0; i < 50; i++ {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// CgroupRootExists reports whether the kubelet's cgroup root is still there
// in the memory hierarchy (for leak checks).
func (k *Kubelet) CgroupRootExists() bool {
	_, err := os.Stat(filepath.Join(cgroupFS, "memory", k.CgroupRoot))
	return err == nil
}

func (k *Kubelet) cleanup() {
	k.Stop()
	if k.t.Failed() {
		k.DumpLog(150)
	}
	if k.rc != nil {
		StopAndRemovePods(k.t, k.rc)
	} else if k.Daemon != nil && k.Daemon.IsRunning() {
		StopAndRemovePods(k.t, k.Daemon.RuntimeClient())
	}
	if err := k.removeCgroupRoot(); err != nil {
		k.t.Errorf("kubelet cleanup: %v", err)
	}
	UnmountUnder(k.t, k.Dir)
	for _, p := range k.madeDirs {
		_ = syscall.Rmdir(p) // only when empty: another kubelet may use it now
	}
	if k.t.Failed() && os.Getenv("CRI_E2E_KEEP") != "" {
		k.t.Logf("keeping %s (CRI_E2E_KEEP)", k.Dir)
		return
	}
	if err := os.RemoveAll(k.Dir); err != nil {
		k.t.Errorf("kubelet cleanup: %v", err)
	}
}

// runtimeClient talks to the runtime kubelet uses.
func (k *Kubelet) runtimeClient() runtimeapi.RuntimeServiceClient {
	if k.rc != nil {
		return k.rc
	}
	return k.Daemon.RuntimeClient()
}

// LogSinceStart is what the current kubelet process has logged.
func (k *Kubelet) LogSinceStart() string {
	k.mu.Lock()
	off := k.logStart
	k.mu.Unlock()
	b, err := os.ReadFile(k.LogPath())
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// WaitLogCount waits until the current kubelet process has logged at least
// n lines holding every one of subs, and fails the test otherwise.
func (k *Kubelet) WaitLogCount(t testing.TB, n int, timeout time.Duration, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := 0
		for _, l := range strings.Split(k.LogSinceStart(), "\n") {
			all := true
			for _, s := range subs {
				if !strings.Contains(l, s) {
					all = false
					break
				}
			}
			if all {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			k.DumpLog(80)
			t.Fatalf("kubelet logged %d lines with %q since its start, want %d within %s", got, subs, n, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

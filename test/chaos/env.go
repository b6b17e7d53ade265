package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/ctrdconfig"
)

// Env is everything the campaign owns: a private containerd, a private
// cri-containerd, a CNI config with its own bridge, subnet, IPAM dir and
// fault-injecting wrapper plugin, a hosts.toml tree pointing at the slow
// registry proxy, and a small tmpfs for the pod logs. Nothing here is
// shared with the stack except the registry behind the proxy and the CNI
// plugin binaries.
type Env struct {
	Opts Options

	RunDir, LibDir, OutDir string

	CtrdAddress string
	CtrdConfig  string
	DaemonSock  string
	DaemonRoot  string
	DaemonState string
	CNIConfDir  string
	CNIBinDir   string
	IPAMDir     string // host-local dataDir
	CertsDir    string
	LogDir      string // tmpfs
	FaultCtl    string // cnifault control file

	Containerd *Proc
	Daemon     *Proc
	Proxy      *SlowProxy

	conn *grpc.ClientConn
	RT   runtimeapi.RuntimeServiceClient
	IMG  runtimeapi.ImageServiceClient
	Ctrd *containerd.Client
}

const (
	networkName = "cri-chaos"
	namespace   = "cri-chaos"
	snapshotter = "overlayfs"
)

// NewEnv lays out the paths (nothing is created yet).
func NewEnv(o Options) *Env {
	e := &Env{Opts: o, RunDir: "/run/cri-chaos", LibDir: "/var/lib/cri-chaos", OutDir: o.OutDir}
	e.CtrdAddress = filepath.Join(e.RunDir, "containerd.sock")
	e.CtrdConfig = filepath.Join(e.RunDir, "containerd.toml")
	e.DaemonSock = filepath.Join(e.RunDir, "cri.sock")
	e.DaemonRoot = filepath.Join(e.LibDir, "cri")
	e.DaemonState = filepath.Join(e.RunDir, "cri")
	e.CNIConfDir = filepath.Join(e.RunDir, "net.d")
	e.CNIBinDir = filepath.Join(e.RunDir, "cnibin")
	e.IPAMDir = filepath.Join(e.LibDir, "ipam")
	e.CertsDir = filepath.Join(e.RunDir, "certs.d")
	e.LogDir = filepath.Join(e.RunDir, "logs")
	e.FaultCtl = filepath.Join(e.RunDir, "cnifault.json")
	return e
}

// LeakScope is what the leak scan looks at.
func (e *Env) LeakScope() LeakScope {
	return LeakScope{
		StateDir: e.DaemonState, RootDir: e.DaemonRoot,
		IPAMDir: filepath.Join(e.IPAMDir, networkName), Network: networkName,
		ContainerdAddress: e.CtrdAddress, Namespace: namespace, Snapshotter: snapshotter,
		CNICacheDir: "/var/lib/cni",
	}
}

// Setup cleans what an interrupted earlier campaign left, writes the
// configs and starts containerd, the proxy and the daemon.
func (e *Env) Setup(ctx context.Context) error {
	if err := e.cleanLeftovers(); err != nil {
		return err
	}
	for _, d := range []string{e.RunDir, e.LibDir, e.OutDir, e.CNIConfDir, e.CNIBinDir, e.IPAMDir, e.LogDir, e.DaemonRoot, e.DaemonState} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("tmpfs", e.LogDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%dm", e.Opts.LogFSMiB)); err != nil {
		return fmt.Errorf("mounting the log tmpfs: %w", err)
	}
	if err := e.checkSubnet(); err != nil {
		return err
	}
	if err := e.writeCNI(); err != nil {
		return err
	}
	proxy, err := NewSlowProxy(e.Opts.Registry)
	if err != nil {
		return err
	}
	e.Proxy = proxy
	if err := e.writeCerts(proxy.Addr()); err != nil {
		return err
	}
	if err := e.writeContainerdConfig(); err != nil {
		return err
	}
	e.Containerd = &Proc{Name: "containerd", Path: e.Opts.ContainerdBin, Args: []string{"--config", e.CtrdConfig}, LogPath: filepath.Join(e.OutDir, "containerd.log")}
	_ = os.Remove(e.Containerd.LogPath)
	if err := e.StartContainerd(ctx); err != nil {
		return err
	}
	daemonCfg := filepath.Join(e.RunDir, "cri.toml")
	if err := os.WriteFile(daemonCfg, []byte(fmt.Sprintf("[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nroot = %q\n", filepath.Join(e.RunDir, "runc"))), 0o644); err != nil {
		return err
	}
	e.Daemon = &Proc{Name: "cri-containerd", Path: e.Opts.DaemonBin, LogPath: filepath.Join(e.OutDir, "cri-containerd.log"), Args: []string{
		"--config", daemonCfg,
		"--socket-path", e.DaemonSock,
		"--containerd-endpoint", e.CtrdAddress,
		"--containerd-namespace", namespace,
		"--root-dir", e.DaemonRoot,
		"--state-dir", e.DaemonState,
		"--registry-config-path", e.CertsDir,
		"--sandbox-image", e.Opts.SandboxImage,
		"--network-conf-dir", e.CNIConfDir,
		"--network-bin-dir", e.CNIBinDir,
		"--metrics-addr", "",
		"--stream-port", "0",
		"--containerd-start-timeout", "60s",
		"-v", "2",
	}}
	if e.Opts.LogMode != "" {
		e.Daemon.Args = append(e.Daemon.Args, "--container-log-mode", e.Opts.LogMode)
	}
	_ = os.Remove(e.Daemon.LogPath)
	if _, err := e.StartDaemon(ctx); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+e.DaemonSock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, MaxDelay: time.Second}, MinConnectTimeout: 2 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return err
	}
	e.conn = conn
	e.RT = runtimeapi.NewRuntimeServiceClient(conn)
	e.IMG = runtimeapi.NewImageServiceClient(conn)
	return nil
}

// NSContext returns ctx with our containerd namespace.
func NSContext(ctx context.Context) context.Context { return namespaces.WithNamespace(ctx, namespace) }

// StartContainerd starts the private containerd and waits until it answers.
func (e *Env) StartContainerd(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx) // an interrupted campaign still needs it for the cleanup
	if err := e.Containerd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if e.Containerd.Exited() {
			return fmt.Errorf("containerd exited at start (log %s)", e.Containerd.LogPath)
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		if e.Ctrd == nil {
			e.Ctrd, err = containerd.New(e.CtrdAddress, containerd.WithDefaultNamespace(namespace), containerd.WithTimeout(2*time.Second))
		}
		if err == nil {
			_, err = e.Ctrd.Version(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd did not answer within 60s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// StartDaemon starts cri-containerd and waits until its CRI socket answers
// Version; it returns the time that took.
func (e *Env) StartDaemon(ctx context.Context) (time.Duration, error) {
	ctx = context.WithoutCancel(ctx) // an interrupted campaign still needs it for the cleanup
	t0 := time.Now()
	if err := e.Daemon.Start(); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		if e.Daemon.Exited() {
			return 0, fmt.Errorf("cri-containerd exited at start (log %s)", e.Daemon.LogPath)
		}
		if err := pingCRI(ctx, e.DaemonSock); err == nil {
			return time.Since(t0), nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("cri-containerd did not answer within 120s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func pingCRI(ctx context.Context, sock string) error {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	_ = c.Close()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(cctx, &runtimeapi.VersionRequest{})
	return err
}

func (e *Env) writeContainerdConfig() error {
	cfg := "# Generated by test/chaos: a private containerd for the fault campaign.\n" + ctrdconfig.Config(ctrdconfig.Options{
		Root:          filepath.Join(e.LibDir, "containerd"),
		State:         filepath.Join(e.RunDir, "containerd"),
		Address:       e.CtrdAddress,
		ShimSocketDir: filepath.Join(e.RunDir, "s"),
		OptDir:        filepath.Join(e.LibDir, "opt"),
		DisableCRI:    true,
		Extra:         "[debug]\n  level = \"info\"\n",
	})
	return os.WriteFile(e.CtrdConfig, []byte(cfg), 0o644)
}

func (e *Env) writeCNI() error {
	real := e.Opts.CNIRealDir
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		src := filepath.Join(real, p)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("CNI plugin %s: %w", src, err)
		}
		if p == "bridge" {
			continue // reached through the wrapper only
		}
		if err := os.Symlink(src, filepath.Join(e.CNIBinDir, p)); err != nil {
			return err
		}
	}
	b, err := os.ReadFile(e.Opts.CNIFaultBin)
	if err != nil {
		return fmt.Errorf("reading the cnifault plugin: %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.CNIBinDir, "cnifault"), b, 0o755); err != nil {
		return err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       networkName,
		"plugins": []any{
			map[string]any{
				"type":          "cnifault",
				"chaosDelegate": filepath.Join(real, "bridge"),
				"chaosControl":  e.FaultCtl,
				"bridge":        e.Opts.Bridge,
				"isGateway":     true,
				"ipMasq":        true,
				"hairpinMode":   true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": e.Opts.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": e.IPAMDir,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(e.FaultCtl, []byte("{}"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.CNIConfDir, "10-cri-chaos.conflist"), data, 0o644)
}

// checkSubnet refuses a subnet another interface already routes.
func (e *Env) checkSubnet() error {
	_, want, err := net.ParseCIDR(e.Opts.Subnet)
	if err != nil {
		return err
	}
	out, err := exec.Command("ip", "-4", "route", "show").Output()
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] == "default" {
			continue
		}
		dev := ""
		for i := range f {
			if f[i] == "dev" && i+1 < len(f) {
				dev = f[i+1]
			}
		}
		if dev == e.Opts.Bridge {
			continue
		}
		_, n, err := net.ParseCIDR(f[0])
		if err != nil {
			continue
		}
		if n.Contains(want.IP) || want.Contains(n.IP) {
			return fmt.Errorf("subnet %s overlaps route %s on %s: pick another with --subnet", e.Opts.Subnet, f[0], dev)
		}
	}
	return nil
}

// writeCerts maps the upstream registries of the test images to the proxy.
func (e *Env) writeCerts(proxyAddr string) error {
	for _, h := range []string{"registry.k8s.io", "gcr.io", "docker.io", "_default"} {
		d := filepath.Join(e.CertsDir, h)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		toml := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", proxyAddr, proxyAddr)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cleanLeftovers removes what an interrupted campaign left: shims of our
// containerd (started by an earlier campaign), mounts and directories.
func (e *Env) cleanLeftovers() error {
	if pids := Shims(e.CtrdAddress, namespace); len(pids) > 0 {
		logf("killing %d shim(s) left by an earlier campaign: %v", len(pids), pids)
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if err := unmountUnder(e.RunDir, e.LibDir); err != nil {
		return err
	}
	for _, d := range []string{e.RunDir, e.LibDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("removing %s: %w", d, err)
		}
	}
	return nil
}

func unmountUnder(dirs ...string) error {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var all []string
	for _, d := range dirs {
		all = append(all, MountsUnder(mi, d)...)
	}
	// deepest first
	for i := len(all) - 1; i >= 0; i-- {
		if err := unix.Unmount(all[i], unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmounting %s: %w", all[i], err)
		}
	}
	return nil
}

// Teardown stops the daemon and containerd, kills what is left of ours,
// removes our iptables rules, bridge and directories (unless keep).
func (e *Env) Teardown(keep bool) {
	if e.conn != nil {
		_ = e.conn.Close()
	}
	if e.Daemon != nil && !e.Daemon.Stop(20*time.Second) {
		logf("cri-containerd did not stop within 20s of SIGTERM (killed)")
	}
	if e.Ctrd != nil {
		_ = e.Ctrd.Close()
	}
	if e.Containerd != nil {
		e.Containerd.Stop(20 * time.Second)
	}
	for _, p := range Shims(e.CtrdAddress, namespace) {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	if e.Proxy != nil {
		e.Proxy.Close()
	}
	removeIptables(networkName)
	_ = exec.Command("ip", "link", "del", e.Opts.Bridge).Run()
	if err := unmountUnder(e.RunDir, e.LibDir); err != nil {
		logf("teardown: %v", err)
	}
	if !keep {
		_ = os.RemoveAll(e.RunDir)
		_ = os.RemoveAll(e.LibDir)
	}
}

// removeIptables deletes nat rules and chains carrying our network's CNI
// comment (only ever left by a leak).
func removeIptables(network string) {
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		return
	}
	tag := fmt.Sprintf(`name: \"%s\"`, network)
	chains := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, "-A ") || !strings.Contains(l, tag) {
			continue
		}
		_ = exec.Command("sh", "-c", "iptables -w -t nat -D "+l[3:]).Run()
		if c := strings.Fields(l)[1]; strings.HasPrefix(c, "CNI-") && !strings.HasPrefix(c, "CNI-HOSTPORT") {
			chains[c] = true
		}
	}
	for c := range chains {
		_ = exec.Command("iptables", "-w", "-t", "nat", "-F", c).Run()
		_ = exec.Command("iptables", "-w", "-t", "nat", "-X", c).Run()
	}
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

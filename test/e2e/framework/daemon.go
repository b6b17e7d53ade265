package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DaemonOptions configures a private cri-containerd instance.
type DaemonOptions struct {
	// Namespace is the containerd namespace (default: a fresh random one,
	// deleted with its images when the test ends).
	Namespace string
	// RegistryConfigPath is the hosts.toml root ("" = an empty directory:
	// no mirrors, loopback registries reached directly).
	RegistryConfigPath string
	// SandboxImage (default registry.k8s.io/pause:3.10.2).
	SandboxImage string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
	// RuncBinary is the runc handler's OCI runtime binary (default
	// $RUNC_BINARY, else runc on the PATH).
	RuncBinary string
}

// Daemon is a cri-containerd process the test started with its own socket,
// root and state directories, against the stack's containerd.
type Daemon struct {
	t        testing.TB
	Bin      string
	Dir      string // holds the socket, root, state, log
	Socket   string
	Endpoint string // unix://Socket
	Env      StackEnv
	Opts     DaemonOptions

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	conn *grpc.ClientConn
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// DaemonBinary returns the daemon binary to run: $CRI_CONTAINERD_BIN when it
// exists, else one built once per test process from the module.
func DaemonBinary(t testing.TB, env StackEnv) string {
	t.Helper()
	if env.DaemonBin != "" {
		if _, err := os.Stat(env.DaemonBin); err == nil {
			return env.DaemonBin
		}
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cri-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "cri-containerd")
		args := []string{"build", "-o", builtBin}
		if os.Getenv("CRI_CONTAINERD_RACE") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/cri-containerd")...)
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// The shim log writer, next to the daemon (shimlog.WriterExecutable),
		// never with -race: a race-enabled binary sleeps 1 s at exit (GORACE
		// atexit_sleep_ms) and the shim waits for the writer at every task
		// delete.
		cmd = exec.Command("go", "build", "-o", filepath.Join(dir, "cri-containerd-log-writer"), "./cmd/cri-containerd-log-writer")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// StartDaemon starts a private daemon and stops it (and cleans its
// namespace, when generated) at the end of the test.
func StartDaemon(t testing.TB, env StackEnv, opts DaemonOptions) *Daemon {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "cri-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	ownNS := opts.Namespace == ""
	if ownNS {
		opts.Namespace = "cri-e2e-" + RandomSuffix()
	}
	if opts.RegistryConfigPath == "" {
		opts.RegistryConfigPath = filepath.Join(dir, "certs.d")
		if err := os.MkdirAll(opts.RegistryConfigPath, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if opts.SandboxImage == "" {
		opts.SandboxImage = "registry.k8s.io/pause:3.10.2"
	}
	d := &Daemon{
		t: t, Bin: DaemonBinary(t, env), Dir: dir,
		Socket: filepath.Join(dir, "cri.sock"), Env: env, Opts: opts,
	}
	d.Endpoint = "unix://" + d.Socket
	t.Cleanup(func() {
		d.Stop()
		d.CheckRaces()
		if ownNS {
			CleanupNamespace(t, env.ContainerdAddress, opts.Namespace)
		}
		if t.Failed() {
			d.DumpLog()
			if os.Getenv("CRI_E2E_KEEP") != "" {
				t.Logf("keeping %s (CRI_E2E_KEEP)", dir)
				return
			}
		}
		_ = os.RemoveAll(dir)
	})
	d.Start()
	return d
}

func (d *Daemon) args() []string {
	cfg := filepath.Join(d.Dir, "config.toml")
	// runc's state root inside the test's directory, so nothing is left
	// under the default /run/containerd/runc/<namespace>.
	runc := d.Opts.RuncBinary
	if runc == "" {
		runc = d.Env.RuncBinary
	}
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\nroot = %q\nbinary_name = %q\n", filepath.Join(d.Dir, "runc"), runc)), 0o644)
	a := []string{
		"--config", cfg,
		"--socket-path", d.Socket,
		"--containerd-endpoint", d.Env.ContainerdAddress,
		"--containerd-namespace", d.Opts.Namespace,
		"--root-dir", filepath.Join(d.Dir, "root"),
		"--state-dir", filepath.Join(d.Dir, "state"),
		"--registry-config-path", d.Opts.RegistryConfigPath,
		"--sandbox-image", d.Opts.SandboxImage,
		"--metrics-addr", "",
		"--stream-port", "0",
		"--containerd-start-timeout", "20s",
		"-v", "4",
	}
	if hasFlag(d.Bin, "nri-socket") {
		// Its own NRI socket and plugin dirs: never the host's.
		a = append(a, "--nri-socket", d.NRISocket(),
			"--nri-plugin-dir", filepath.Join(d.Dir, "nri", "plugins"),
			"--nri-plugin-config-dir", filepath.Join(d.Dir, "nri", "conf.d"))
	}
	if d.Env.CNIConfDir != "" {
		a = append(a, "--network-conf-dir", d.Env.CNIConfDir)
	}
	if d.Env.CNIBinDir != "" {
		a = append(a, "--network-bin-dir", d.Env.CNIBinDir)
	}
	// CRI_E2E_DAEMON_ARGS adds flags to every test daemon (e.g. to run the
	// suite with --container-log-mode shim).
	a = append(a, strings.Fields(os.Getenv("CRI_E2E_DAEMON_ARGS"))...)
	return append(a, d.Opts.ExtraArgs...)
}

var (
	flagsMu  sync.Mutex
	binFlags = map[string]string{} // binary → its --help text
)

// hasFlag reports whether the daemon binary bin knows --name (a binary
// from before the flag, e.g. $CRI_CONTAINERD_BIN of an older install,
// does not).
func hasFlag(bin, name string) bool {
	flagsMu.Lock()
	defer flagsMu.Unlock()
	help, ok := binFlags[bin]
	if !ok {
		out, _ := exec.Command(bin, "--help").CombinedOutput()
		help = string(out)
		binFlags[bin] = help
	}
	return strings.Contains(help, "-"+name+" ")
}

// NRISocket is the daemon's NRI socket (--nri-socket).
func (d *Daemon) NRISocket() string { return filepath.Join(d.Dir, "nri.sock") }

// Args is the daemon's command line (flags later in it override earlier ones).
func (d *Daemon) Args() []string { return d.args() }

// LogPath is the daemon's combined stdout/stderr (appended across restarts).
func (d *Daemon) LogPath() string { return filepath.Join(d.Dir, "daemon.log") }

// Start starts the process and waits until the CRI socket answers.
func (d *Daemon) Start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		d.t.Fatal("daemon already running")
	}
	proc, err := StartProcess(exec.Command(d.Bin, d.args()...), d.LogPath())
	if err != nil {
		d.t.Fatal(err)
	}
	d.cmd, d.done = proc.Cmd, proc.done
	if err := proc.WaitForSocket(d.Socket, 60*time.Second); err != nil {
		select {
		case <-proc.Done():
			d.cmd = nil
		default:
		}
		d.DumpLog()
		d.t.Fatal(err)
	}
	conn, err := grpc.NewClient(d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.t.Fatal(err)
	}
	d.conn = conn
}

// Stop terminates the daemon (SIGTERM, then SIGKILL after 10s).
func (d *Daemon) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		_ = d.conn.Close()
		d.conn = nil
	}
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	d.cmd = nil
}

// Restart stops and starts the daemon with the same directories and namespace.
func (d *Daemon) Restart() {
	d.t.Helper()
	d.Stop()
	d.Start()
}

// ImageClient is a CRI image client on the daemon's socket.
func (d *Daemon) ImageClient() runtimeapi.ImageServiceClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return runtimeapi.NewImageServiceClient(d.conn)
}

// RuntimeClient is a CRI runtime client on the daemon's socket.
func (d *Daemon) RuntimeClient() runtimeapi.RuntimeServiceClient {
	d.mu.Lock()
	defer d.mu.Unlock()
	return runtimeapi.NewRuntimeServiceClient(d.conn)
}

// CheckRaces fails the test when the daemon (built with -race) reported a
// data race in its log: the race detector only warns, the daemon goes on.
func (d *Daemon) CheckRaces() {
	b, err := os.ReadFile(d.LogPath())
	if err != nil {
		return
	}
	if i := strings.Index(string(b), "WARNING: DATA RACE"); i >= 0 {
		end := min(len(b), i+6000)
		d.t.Errorf("the daemon reported a data race (%s):\n%s", d.LogPath(), b[i:end])
	}
}

// DumpLog writes the tail of the daemon log to the test log.
func (d *Daemon) DumpLog() {
	b, err := os.ReadFile(d.LogPath())
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 200 {
		lines = lines[len(lines)-200:]
	}
	d.t.Logf("daemon log (%s), last %d lines:\n%s", d.LogPath(), len(lines), strings.Join(lines, "\n"))
}

// DialCRI connects to a CRI endpoint ("unix:///path").
func DialCRI(t testing.TB, endpoint string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// CleanupNamespace deletes every image in a containerd namespace
// (synchronously garbage-collected) and then the namespace.
func CleanupNamespace(t testing.TB, address, ns string) {
	cli, err := containerd.New(address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Logf("cleanup %s: %v", ns, err)
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	// Tasks and containers a failed test left behind go first, while the
	// runc state root in the daemon's directory still exists: once it is
	// removed containerd can no longer kill them.
	if ctrs, err := cli.Containers(ctx); err == nil {
		for _, c := range ctrs {
			if task, err := c.Task(ctx, nil); err == nil {
				if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
					t.Logf("cleanup %s: deleting task %s: %v", ns, c.ID(), err)
				}
			}
			if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
				t.Logf("cleanup %s: deleting container %s: %v", ns, c.ID(), err)
			}
		}
	}
	is := cli.ImageService()
	imgs, err := is.List(ctx)
	if err != nil {
		t.Logf("cleanup %s: listing images: %v", ns, err)
	}
	for i, img := range imgs {
		var opts []images.DeleteOpt
		if i == len(imgs)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, img.Name, opts...); err != nil {
			t.Logf("cleanup %s: deleting image %s: %v", ns, img.Name, err)
		}
	}
	// Leases left by interrupted pulls pin content; drop them too.
	ls := cli.LeasesService()
	if all, err := ls.List(ctx); err == nil {
		for _, l := range all {
			_ = ls.Delete(ctx, l, leases.SynchronousDelete)
		}
	}
	removeNamespaceCgroups(ns)
	var err2 error
	for i := 0; i < 20; i++ {
		if err2 = cli.NamespaceService().Delete(ctx, ns); err2 == nil {
			return
		}
		time.Sleep(250 * time.Millisecond) // garbage collection is asynchronous
	}
	t.Logf("cleanup: namespace %s not deleted: %v", ns, err2)
}

// removeNamespaceCgroups removes the cgroup directory named after the
// containerd namespace in every hierarchy: a container the test ran
// without a cgroup parent had its cgroup at /<namespace>/<id>, and runc
// removes only the leaf (and not even that when a fault test killed what
// would have). Each test's namespace is new, so without this every test
// would leave an empty cgroup per hierarchy behind (thousands over a day of
// runs, which the kernel's memory cgroup walks keep paying for). Only
// cgroups without processes go (rmdir refuses the others); errors are
// ignored.
func removeNamespaceCgroups(ns string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", ns))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ns)) // cgroup v2 alone
	for _, d := range dirs {
		leaves, _ := os.ReadDir(d)
		for _, l := range leaves {
			if l.IsDir() {
				_ = os.Remove(filepath.Join(d, l.Name()))
			}
		}
		_ = os.Remove(d)
	}
}

// RandomSuffix returns 8 random hex characters.
func RandomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Leases lists the containerd leases in a namespace (a finished pull must
// not leave one behind: it would pin content for its 24h expiry).
func Leases(t testing.TB, address, ns string) []string {
	t.Helper()
	cli, err := containerd.New(address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	all, err := cli.LeasesService().List(ctx)
	if err != nil {
		t.Fatalf("listing leases in %s: %v", ns, err)
	}
	var ids []string
	for _, l := range all {
		ids = append(ids, l.ID)
	}
	return ids
}

// ContainerdClient connects to containerd for direct checks; the returned
// context carries the namespace.
func ContainerdClient(t testing.TB, address, ns string) (*containerd.Client, context.Context) {
	t.Helper()
	cli, err := containerd.New(address, containerd.WithDefaultNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 5*time.Minute)
	t.Cleanup(cancel)
	return cli, ctx
}

package e2e

// The daemon under systemd, with systemd's part played by the test (this
// host has no systemd as PID 1): socket activation (LISTEN_FDS/LISTEN_PID)
// and sd_notify (NOTIFY_SOCKET, Type=notify).

import (
	"context"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// activatedDaemon is a daemon process started as systemd would start it.
type activatedDaemon struct {
	cmd  *exec.Cmd
	done <-chan struct{}
}

// startActivated starts bin with args, the listening socket sock as fd 3
// (LISTEN_FDS=1, LISTEN_PID = the daemon's pid: sh execs it) and
// NOTIFY_SOCKET=notify.
func startActivated(t *testing.T, bin string, args []string, sock *os.File, notify, logPath string) *activatedDaemon {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `LISTEN_PID=$$ exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=cri-containerd.socket", "NOTIFY_SOCKET="+notify)
	cmd.ExtraFiles = []*os.File{sock}
	p, err := framework.StartProcess(cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	a := &activatedDaemon{cmd: cmd, done: p.Done()}
	t.Cleanup(p.Kill)
	return a
}

// readNotify returns the next sd_notify datagram, or "" after timeout.
func readNotify(t *testing.T, c *net.UnixConn, timeout time.Duration) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.Read(buf)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return ""
		}
		t.Fatalf("reading the notify socket: %v", err)
	}
	return string(buf[:n])
}

// TestSystemdSocketActivationAndNotify: the daemon serves CRI on the socket
// systemd passes (--socket-path fd://, and the socket_path naming it),
// gives it the --socket-group group and mode 0660, sends READY=1 only once
// state is recovered from containerd, STOPPING=1 on SIGTERM, and leaves the
// socket to systemd when it stops, so that a restart gets the same socket
// (connections made meanwhile wait in it).
func TestSystemdSocketActivationAndNotify(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	// A pod for the activated daemon to recover (host network: no CNI needed).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run, err := d.RuntimeClient().RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{
		Config: framework.PodConfig("systemd-recovered", framework.WithHostNetwork())})
	if err != nil {
		t.Fatal(err)
	}
	podID := run.GetPodSandboxId()
	d.Stop()

	// systemd's side: the CRI socket, the notify socket.
	sockPath := filepath.Join(d.Dir, "activated.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sockFile, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	defer sockFile.Close()
	notifyPath := filepath.Join(d.Dir, "notify.sock")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	group, wantGID := "", os.Getegid()
	if g, err := user.LookupGroup("nogroup"); err == nil {
		group = "nogroup"
		wantGID, _ = strconv.Atoi(g.Gid)
	}
	// containerd is "not up yet": the daemon waits for this path, so the
	// test decides when recovery can happen.
	ctrdLink := filepath.Join(d.Dir, "containerd.sock")
	args := append(d.Args(), "--containerd-endpoint", ctrdLink, "--containerd-start-timeout", "2m", "--socket-group", group)

	conn, err := grpc.NewClient("unix://"+sockPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := runtimeapi.NewRuntimeServiceClient(conn)

	t.Run("fd://", func(t *testing.T) {
		a := startActivated(t, d.Bin, append(args, "--socket-path", "fd://"), sockFile, notifyPath, d.LogPath())
		// A client (kubelet) connects before the daemon is ready: its call
		// waits in the socket's backlog.
		early := make(chan error, 1)
		go func() {
			_, err := rc.Version(ctx, &runtimeapi.VersionRequest{})
			early <- err
		}()
		if msg := readNotify(t, notify, 3*time.Second); msg != "" {
			t.Fatalf("notify %q before containerd is reachable (before recovery)", msg)
		}
		select {
		case err := <-early:
			t.Fatalf("Version answered before recovery: %v", err)
		default:
		}
		if err := os.Symlink(env.ContainerdAddress, ctrdLink); err != nil {
			t.Fatal(err)
		}
		if msg := readNotify(t, notify, 2*time.Minute); msg != "READY=1" {
			d.DumpLog()
			t.Fatalf("notify = %q, want READY=1", msg)
		}
		// Ready means recovered: the pod is known at once.
		pods, err := rc.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: podID}})
		if err != nil || len(pods.GetItems()) != 1 || pods.GetItems()[0].GetState() != runtimeapi.PodSandboxState_SANDBOX_READY {
			t.Fatalf("right after READY=1: ListPodSandbox(%s) = %v, %v; want the recovered ready pod", podID, pods.GetItems(), err)
		}
		if err := <-early; err != nil {
			t.Errorf("Version sent before READY=1: %v", err)
		}
		fi, err := os.Stat(sockPath)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != wantGID || fi.Mode().Perm() != 0o660 {
			t.Errorf("inherited socket: gid %d mode %v, want gid %d (--socket-group %q) mode 0660", st.Gid, fi.Mode().Perm(), wantGID, group)
		}

		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		if msg := readNotify(t, notify, time.Minute); msg != "STOPPING=1" {
			t.Errorf("after SIGTERM: notify = %q, want STOPPING=1", msg)
		}
		<-a.done
		if !a.cmd.ProcessState.Success() {
			t.Errorf("daemon exit: %v", a.cmd.ProcessState)
		}
		// The socket is systemd's: the daemon neither removed nor closed it.
		if _, err := os.Stat(sockPath); err != nil {
			t.Errorf("the socket is gone after the daemon stopped: %v", err)
		}
	})

	t.Run("socket path names the passed socket", func(t *testing.T) {
		// A call made while the daemon is down waits for the restart.
		early := make(chan error, 1)
		go func() {
			_, err := rc.Version(ctx, &runtimeapi.VersionRequest{})
			early <- err
		}()
		a := startActivated(t, d.Bin, append(args, "--socket-path", sockPath), sockFile, notifyPath, d.LogPath())
		if msg := readNotify(t, notify, 2*time.Minute); msg != "READY=1" {
			d.DumpLog()
			t.Fatalf("notify = %q, want READY=1", msg)
		}
		if err := <-early; err != nil {
			t.Errorf("Version sent while the daemon was down: %v", err)
		}
		if _, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Error(err)
		}
		if _, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Error(err)
		}
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		if msg := readNotify(t, notify, time.Minute); msg != "STOPPING=1" {
			t.Errorf("after SIGTERM: notify = %q, want STOPPING=1", msg)
		}
		<-a.done
		if !a.cmd.ProcessState.Success() {
			t.Errorf("daemon exit: %v", a.cmd.ProcessState)
		}
	})
}

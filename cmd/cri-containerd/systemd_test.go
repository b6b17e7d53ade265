package main

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cri-containerd/cri-containerd/config"
)

// TestPickListener: which of the sockets systemd passed is the CRI socket.
func TestPickListener(t *testing.T) {
	dir := t.TempDir()
	listen := func(name string) net.Listener {
		l, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}
	a, b := listen("a.sock"), listen("b.sock")
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	for _, tc := range []struct {
		name       string
		socketPath string
		inherited  []net.Listener
		want       net.Listener
		wantUnused int
		wantErr    string
	}{
		{name: "none, path", socketPath: filepath.Join(dir, "a.sock")},
		{name: "none, fd://", socketPath: "fd://", wantErr: "passed no listening socket"},
		{name: "only non-listeners, fd://", socketPath: "fd://", inherited: []net.Listener{nil}, wantErr: "passed no listening socket"},
		{name: "fd:// takes the one", socketPath: "fd://", inherited: []net.Listener{nil, a}, want: a},
		{name: "fd:// with two is ambiguous", socketPath: "fd://", inherited: []net.Listener{a, b}, wantUnused: 2, wantErr: "2 listening sockets"},
		{name: "path picks its socket", socketPath: filepath.Join(dir, "b.sock"), inherited: []net.Listener{a, tcp, b}, want: b, wantUnused: 2},
		{name: "path matches none", socketPath: filepath.Join(dir, "c.sock"), inherited: []net.Listener{a}, wantUnused: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, unused, err := pickListener(tc.socketPath, tc.inherited)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("listener = %v, want %v", got, tc.want)
			}
			if len(unused) != tc.wantUnused {
				t.Errorf("unused = %d, want %d", len(unused), tc.wantUnused)
			}
		})
	}
}

// unitFile reads a systemd unit into section -> key -> values.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestSystemdUnits: the service is Type=notify and uses the socket unit,
// whose socket is the daemon's default socket_path (so the daemon takes it
// without --socket-path fd://), mode 0660 as the daemon's own.
func TestSystemdUnits(t *testing.T) {
	svc := unitFile(t, "../../deploy/systemd/cri-containerd.service")
	sock := unitFile(t, "../../deploy/systemd/cri-containerd.socket")
	if got := svc["Service"]["Type"]; len(got) != 1 || got[0] != "notify" {
		t.Errorf("Service.Type = %v, want notify", got)
	}
	wantsSocket := false
	for _, k := range []string{"Wants", "Requires"} {
		for _, v := range svc["Unit"][k] {
			wantsSocket = wantsSocket || strings.Contains(v, "cri-containerd.socket")
		}
	}
	if !wantsSocket {
		t.Error("the service does not pull in cri-containerd.socket")
	}
	if got := sock["Socket"]["ListenStream"]; len(got) != 1 || got[0] != config.Default().SocketPath {
		t.Errorf("Socket.ListenStream = %v, want the default socket_path %s", got, config.Default().SocketPath)
	}
	if got := sock["Socket"]["SocketMode"]; len(got) != 1 || got[0] != "0660" {
		t.Errorf("Socket.SocketMode = %v, want 0660", got)
	}
	if got := sock["Install"]["WantedBy"]; len(got) != 1 || got[0] != "sockets.target" {
		t.Errorf("Install.WantedBy = %v", got)
	}
	for _, v := range svc["Service"]["ExecStart"] {
		if strings.Contains(v, "--socket-path") {
			t.Errorf("ExecStart %q sets --socket-path: it must match the socket unit", v)
		}
	}
}

// TestRegressionSecondDaemonRecoversNextToFirst: a daemon started while
// another serves its socket must stop before it connects to containerd and
// recovers (it would act on the first one's objects). Before, the socket
// was checked only after recovery; here containerd is unreachable, so the
// old code failed on containerd after its start timeout, not on the socket.
func TestRegressionSecondDaemonRecoversNextToFirst(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "cri.sock")
	l, err := net.Listen("unix", sock) // the first daemon
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_ = os.WriteFile(filepath.Join(dir, "c.toml"), nil, 0o644)
	err = run([]string{"--config", filepath.Join(dir, "c.toml"), "--socket-path", sock,
		"--containerd-endpoint", filepath.Join(dir, "no-containerd.sock"), "--containerd-start-timeout", "2s",
		"--root-dir", filepath.Join(dir, "root"), "--state-dir", filepath.Join(dir, "state"),
		"--metrics-addr", "", "--stream-port", "0"})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second daemon: %v, want an in-use error before recovery", err)
	}
}

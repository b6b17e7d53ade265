package sandbox

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	hostsFile := filepath.Join(dir, "host-hosts")
	resolvFile := filepath.Join(dir, "host-resolv")
	os.WriteFile(hostsFile, []byte("127.0.0.1 localhost node1\n"), 0o644)
	os.WriteFile(resolvFile, []byte("nameserver 10.0.0.1\n"), 0o644)
	host := HostFiles{Hosts: hostsFile, ResolvConf: resolvFile, Hostname: func() (string, error) { return "node1", nil }}

	for _, tc := range []struct {
		name                     string
		cfg                      *runtimeapi.PodSandboxConfig
		wantHostname, wantResolv string
	}{
		{"defaults from host", &runtimeapi.PodSandboxConfig{}, "node1\n", "nameserver 10.0.0.1\n"},
		{"hostname and dns", &runtimeapi.PodSandboxConfig{
			Hostname: "web-0",
			DnsConfig: &runtimeapi.DNSConfig{
				Servers: []string{"8.8.8.8", "1.1.1.1"}, Searches: []string{"ns.svc.cluster.local", "svc.cluster.local"},
				Options: []string{"ndots:5", "timeout:1"},
			},
		}, "web-0\n", "search ns.svc.cluster.local svc.cluster.local\nnameserver 8.8.8.8\nnameserver 1.1.1.1\noptions ndots:5 timeout:1\n"},
		{"empty dns config", &runtimeapi.PodSandboxConfig{Hostname: "h", DnsConfig: &runtimeapi.DNSConfig{}}, "h\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PathsFor(filepath.Join(dir, tc.name, "root"), filepath.Join(dir, tc.name, "state"), "abc")
			if err := WriteFiles(p, tc.cfg, host); err != nil {
				t.Fatal(err)
			}
			check := func(path, want string) {
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Errorf("%s = %q, want %q", filepath.Base(path), got, want)
				}
			}
			check(p.HostnamePath(), tc.wantHostname)
			check(p.ResolvConfPath(), tc.wantResolv)
			check(p.HostsPath(), "127.0.0.1 localhost node1\n")
		})
	}
}

// TestRegressionPodFilesNotAtomic: pod files used to be written in place
// (truncate, then write) with a mode narrowed by the daemon's umask. Now a
// rewrite replaces each file whole: a reader of the previous file (a
// container has it bind-mounted by inode) never sees it truncated or torn,
// no temporary file is left, and the mode is 0644 even under umask 077, so
// non-root container users can read /etc/hosts and /etc/resolv.conf.
func TestRegressionPodFilesNotAtomic(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	hostsFile := filepath.Join(dir, "host-hosts")
	if err := os.WriteFile(hostsFile, []byte("127.0.0.1 localhost node1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	host := HostFiles{Hosts: hostsFile, ResolvConf: filepath.Join(dir, "none"), Hostname: func() (string, error) { return "node1", nil }}
	p := PathsFor(filepath.Join(dir, "root"), filepath.Join(dir, "state"), "abc")
	cfg := &runtimeapi.PodSandboxConfig{Hostname: "first-hostname-that-is-long", DnsConfig: &runtimeapi.DNSConfig{Servers: []string{"10.0.0.10"}}}
	if err := WriteFiles(p, cfg, host); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.HostnamePath(), p.HostsPath(), p.ResolvConfPath()} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode = %v under umask 077, want 0644", filepath.Base(f), fi.Mode().Perm())
		}
	}

	// A container holds the first files.
	held, err := os.Open(p.HostnamePath())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cfg.Hostname = "h2"
	if err := WriteFiles(p, cfg, host); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(held)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "first-hostname-that-is-long\n" {
		t.Errorf("the mounted hostname file changed under its reader: %q", b)
	}
	if b, _ := os.ReadFile(p.HostnamePath()); string(b) != "h2\n" {
		t.Errorf("hostname = %q after the rewrite", b)
	}
	entries, err := os.ReadDir(p.RootDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("sandbox dir holds %v, want the three pod files", names)
	}
}

func TestStoreGetPrefix(t *testing.T) {
	s := NewStore()
	for _, id := range []string{"abc123", "abd456", "xyz"} {
		if err := s.Add(New(Metadata{ID: id})); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		q, want string
		wantErr bool
	}{
		{"abc123", "abc123", false}, {"abc", "abc123", false}, {"ab", "", true}, {"x", "xyz", false}, {"nope", "", true}, {"", "", true},
	} {
		sb, err := s.Get(tc.q)
		if tc.wantErr != (err != nil) {
			t.Fatalf("Get(%q) err = %v", tc.q, err)
		}
		if err == nil && sb.ID != tc.want {
			t.Fatalf("Get(%q) = %q, want %q", tc.q, sb.ID, tc.want)
		}
	}
}

// TestRegression_ExitBeforeSetReady: an exit recorded before SetReady (the
// pause process died right after start) must not be overwritten by Ready.
func TestRegression_ExitBeforeSetReady(t *testing.T) {
	sb := New(Metadata{ID: "x"})
	sb.SetNotReady(137, time.Now())
	if sb.SetReady(42) {
		t.Fatal("SetReady succeeded after the exit was recorded")
	}
	if st, _ := sb.State(); st != StateNotReady {
		t.Fatalf("state = %v, want NotReady", st)
	}
	select {
	case <-sb.Stopped():
	default:
		t.Fatal("Stopped not closed")
	}
	fresh := New(Metadata{ID: "y"})
	if !fresh.SetReady(7) {
		t.Fatal("SetReady on a new sandbox failed")
	}
	if st, pid := fresh.State(); st != StateReady || pid != 7 {
		t.Fatalf("state = %v pid %d", st, pid)
	}
}

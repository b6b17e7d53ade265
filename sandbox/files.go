package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/atomicfile"
)

// Paths are the per-sandbox directories and files the daemon owns.
type Paths struct {
	// RootDir holds persistent files (hostname, hosts, resolv.conf).
	RootDir string
	// StateDir holds volatile things (shm mount).
	StateDir string
	// NetNSDir is the directory the pod netns is mounted in; it is derived
	// from the ID so a crash between creating the netns and persisting
	// metadata can still be found.
	NetNSDir string
}

// PathsFor returns the paths of sandbox id under the daemon's root and state dirs.
func PathsFor(rootDir, stateDir, id string) Paths {
	return Paths{
		RootDir:  filepath.Join(rootDir, "sandboxes", id),
		StateDir: filepath.Join(stateDir, "sandboxes", id),
		NetNSDir: filepath.Join(stateDir, "netns", id),
	}
}

// HostnamePath is the pod's /etc/hostname.
func (p Paths) HostnamePath() string { return filepath.Join(p.RootDir, "hostname") }

// HostsPath is the pod's /etc/hosts.
func (p Paths) HostsPath() string { return filepath.Join(p.RootDir, "hosts") }

// ResolvConfPath is the pod's /etc/resolv.conf.
func (p Paths) ResolvConfPath() string { return filepath.Join(p.RootDir, "resolv.conf") }

// ShmPath is the pod's /dev/shm mount point.
func (p Paths) ShmPath() string { return filepath.Join(p.StateDir, "shm") }

// ResolvConf renders a resolv.conf for the pod's DNSConfig.
func ResolvConf(dns *runtimeapi.DNSConfig) []byte {
	var b bytes.Buffer
	if len(dns.GetSearches()) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.GetSearches(), " "))
	}
	for _, s := range dns.GetServers() {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(dns.GetOptions()) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.GetOptions(), " "))
	}
	return b.Bytes()
}

// HostFiles is where the host's own files are read from (tests override it).
type HostFiles struct {
	Hosts, ResolvConf string
	Hostname          func() (string, error)
}

// DefaultHostFiles reads the real host files.
var DefaultHostFiles = HostFiles{Hosts: "/etc/hosts", ResolvConf: "/etc/resolv.conf", Hostname: os.Hostname}

// podFileMode is the mode of the pod files: every container user reads them.
const podFileMode = 0o644

// WriteFiles writes hostname, hosts and resolv.conf for a pod:
// hostname from the config (the node's when empty); hosts copied from the
// host; resolv.conf from DNSConfig, or the host's when none is given. Each
// file is replaced atomically and durably (a crash never leaves a torn one,
// and a container that has one mounted keeps its complete content), with
// mode 0644 whatever the daemon's umask.
func WriteFiles(p Paths, cfg *runtimeapi.PodSandboxConfig, host HostFiles) error {
	if err := atomicfile.MkdirAll(p.RootDir, 0o755); err != nil {
		return fmt.Errorf("creating sandbox dir: %w", err)
	}
	hostname := cfg.GetHostname()
	if hostname == "" {
		h, err := host.Hostname()
		if err != nil {
			return fmt.Errorf("reading node hostname: %w", err)
		}
		hostname = h
	}
	if err := atomicfile.WriteFile(p.HostnamePath(), []byte(hostname+"\n"), podFileMode); err != nil {
		return fmt.Errorf("writing hostname: %w", err)
	}
	hosts, err := os.ReadFile(host.Hosts)
	if err != nil {
		hosts = []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	if err := atomicfile.WriteFile(p.HostsPath(), hosts, podFileMode); err != nil {
		return fmt.Errorf("writing hosts: %w", err)
	}
	var resolv []byte
	if dns := cfg.GetDnsConfig(); dns != nil {
		resolv = ResolvConf(dns)
	} else if resolv, err = os.ReadFile(host.ResolvConf); err != nil {
		resolv = nil
	}
	if err := atomicfile.WriteFile(p.ResolvConfPath(), resolv, podFileMode); err != nil {
		return fmt.Errorf("writing resolv.conf: %w", err)
	}
	return nil
}

package doctor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// DefaultIPAMDataDir is host-local's dataDir when the config names none.
const DefaultIPAMDataDir = "/var/lib/cni/networks"

// DefaultCNICacheDir is libcni's cache directory (go-cni does not change it).
const DefaultCNICacheDir = "/var/lib/cni"

// loopbackNetwork is the network go-cni adds for the pod's lo.
const loopbackNetwork = "cni-loopback"

// network is one CNI network of the daemon's config directory.
type network struct {
	Name  string
	File  string
	Bytes []byte // the conflist, as given to DEL when no stored arguments exist
	// IPAMDirs are the host-local allocation directories (<dataDir>/<name>).
	IPAMDirs []string
}

// loadNetworks reads every CNI config in dir. A missing dir gives none.
func loadNetworks(dir string) ([]network, error) {
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing CNI configs in %s: %w", dir, err)
	}
	var out []network
	for _, f := range files {
		var list *libcni.NetworkConfigList
		if strings.HasSuffix(f, ".conflist") {
			list, err = libcni.ConfListFromFile(f)
		} else {
			var c *libcni.PluginConfig
			if c, err = libcni.ConfFromFile(f); err == nil {
				list, err = libcni.ConfListFromConf(c)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading CNI config %s: %w", f, err)
		}
		n := network{Name: list.Name, File: f, Bytes: list.Bytes}
		for _, p := range list.Plugins {
			var pc struct {
				IPAM struct {
					Type    string `json:"type"`
					DataDir string `json:"dataDir"`
				} `json:"ipam"`
			}
			if json.Unmarshal(p.Bytes, &pc) != nil || pc.IPAM.Type != "host-local" {
				continue
			}
			d := pc.IPAM.DataDir
			if d == "" {
				d = DefaultIPAMDataDir
			}
			n.IPAMDirs = append(n.IPAMDirs, filepath.Join(d, list.Name))
		}
		out = append(out, n)
	}
	return out, nil
}

// ipamAllocation is one host-local allocation file: <dir>/<ip> holding the
// container ID and the interface name.
type ipamAllocation struct {
	Path, IP, ID, IfName string
	ModTime              time.Time
}

// readIPAMDir lists the allocations in a host-local network directory.
func readIPAMDir(dir string) ([]ipamAllocation, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []ipamAllocation
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "lock" || strings.HasPrefix(name, "last_reserved_ip") || strings.HasPrefix(name, ".") {
			continue
		}
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		id, ifname := parseIPAMFile(b)
		if id == "" {
			continue
		}
		out = append(out, ipamAllocation{Path: p, IP: name, ID: id, IfName: ifname, ModTime: fi.ModTime()})
	}
	return out, nil
}

// parseIPAMFile reads host-local's file content: the container ID, then
// (newer plugins) the interface name on the next line (\r\n or \n).
func parseIPAMFile(b []byte) (id, ifname string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) > 0 {
		id = lines[0]
	}
	if len(lines) > 1 {
		ifname = lines[1]
	}
	return id, ifname
}

// cacheEntry is a libcni result cache file: the arguments of a successful
// ADD, kept until DEL succeeds.
type cacheEntry struct {
	Path           string
	Kind           string         `json:"kind"`
	ContainerID    string         `json:"containerId"`
	Config         []byte         `json:"config"`
	IfName         string         `json:"ifName"`
	NetworkName    string         `json:"networkName"`
	NetNS          string         `json:"netns,omitempty"`
	CniArgs        [][2]string    `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
	ModTime        time.Time      `json:"-"`
}

// readCache lists the cache entries under <cacheDir>/results.
func readCache(cacheDir string) ([]cacheEntry, error) {
	dir := filepath.Join(cacheDir, "results")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []cacheEntry
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var c cacheEntry
		if json.Unmarshal(b, &c) != nil || c.ContainerID == "" || c.NetworkName == "" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		c.Path, c.ModTime = p, fi.ModTime()
		out = append(out, c)
	}
	return out, nil
}

// LibCNI runs CNI DEL through libcni with the plugin directories binDirs.
type LibCNI struct {
	BinDirs  []string
	CacheDir string
	// Timeout bounds one DEL (default 1 minute).
	Timeout time.Duration
}

// Del implements CNI.
func (c LibCNI) Del(ctx context.Context, r DelRequest) error {
	list, err := libcni.ConfListFromBytes(r.Config)
	if err != nil {
		pc, cerr := libcni.ConfFromBytes(r.Config)
		if cerr != nil {
			return fmt.Errorf("parsing CNI config of network %s: %w", r.Network, err)
		}
		if list, err = libcni.ConfListFromConf(pc); err != nil {
			return fmt.Errorf("parsing CNI config of network %s: %w", r.Network, err)
		}
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc := libcni.NewCNIConfigWithCacheDir(c.BinDirs, c.CacheDir, nil)
	rt := &libcni.RuntimeConf{
		ContainerID:    r.ContainerID,
		NetNS:          r.NetNS,
		IfName:         r.IfName,
		Args:           r.Args,
		CapabilityArgs: r.CapabilityArgs,
	}
	if err := cc.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("CNI DEL of %s on network %s: %w", r.ContainerID, r.Network, err)
	}
	return nil
}

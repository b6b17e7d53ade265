// Package cni owns the pod network plugin: it loads the CNI configuration
// through go-cni, reloads it when the configuration directory changes, and
// attaches/detaches pod network namespaces.
package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	gocni "github.com/containerd/go-cni"
	"k8s.io/klog/v2"
)

// Manager wraps a go-cni instance with hot reload of the config directory.
type Manager struct {
	confDir string
	binDirs []string
	maxConf int

	mu      sync.RWMutex
	plugin  gocni.CNI
	loadErr error
	sum     string
}

// Option configures a Manager.
type Option func(*Manager)

// WithMaxConfNum limits how many config files are loaded (0 = all).
func WithMaxConfNum(n int) Option { return func(m *Manager) { m.maxConf = n } }

// New creates a Manager and loads the current configuration (a missing or
// empty config directory is not an error: the network is reported not ready).
func New(confDir string, binDirs []string, opts ...Option) (*Manager, error) {
	m := &Manager{confDir: confDir, binDirs: binDirs, maxConf: 1}
	for _, o := range opts {
		o(m)
	}
	maxConf := m.maxConf
	if maxConf <= 0 {
		maxConf = 0
	}
	p, err := gocni.New(
		gocni.WithPluginDir(binDirs),
		gocni.WithPluginConfDir(confDir),
		gocni.WithPluginMaxConfNum(maxConf),
		gocni.WithInterfacePrefix("eth"),
		gocni.WithMinNetworkCount(2),
	)
	if err != nil {
		return nil, fmt.Errorf("initialising CNI: %w", err)
	}
	m.plugin = p
	m.Sync()
	return m, nil
}

// Run re-checks the config directory every interval until ctx is done.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Sync()
		}
	}
}

// dirSum fingerprints the config files (names, sizes, mtimes, content).
func (m *Manager) dirSum() string {
	entries, err := os.ReadDir(m.confDir)
	if err != nil {
		return "err:" + err.Error()
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".conf", ".conflist", ".json":
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(m.confDir, n))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Sync reloads the configuration if the directory changed since the last load.
func (m *Manager) Sync() {
	sum := m.dirSum()
	m.mu.RLock()
	same := sum == m.sum
	m.mu.RUnlock()
	if same {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.plugin.Load(gocni.WithLoNetwork, gocni.WithDefaultConf)
	if err == nil {
		err = m.plugin.Status()
	}
	if err != nil {
		klog.InfoS("CNI configuration not loaded", "dir", m.confDir, "err", err)
	} else {
		klog.InfoS("CNI configuration loaded", "dir", m.confDir)
	}
	m.loadErr = err
	m.sum = sum
}

// Status returns nil when a usable network configuration is loaded.
func (m *Manager) Status() error {
	m.Sync()
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.loadErr != nil {
		return m.loadErr
	}
	return m.plugin.Status()
}

// Config returns the loaded configuration (for verbose Status).
func (m *Manager) Config() *gocni.ConfigResult {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.plugin.GetConfig()
}

// Setup attaches the network namespace at path to the pod network.
func (m *Manager) Setup(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) (*gocni.Result, error) {
	if err := m.Status(); err != nil {
		return nil, fmt.Errorf("network not ready: %w", err)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.plugin.Setup(ctx, id, path, opts...)
}

// Remove detaches the pod from the network. It must be called with the same
// options as Setup; the namespace may already be gone.
func (m *Manager) Remove(ctx context.Context, id, path string, opts ...gocni.NamespaceOpts) error {
	m.Sync()
	m.mu.RLock()
	defer m.mu.RUnlock()
	err := m.plugin.Remove(ctx, id, path, opts...)
	if err != nil && strings.Contains(err.Error(), "no such file or directory") && path != "" {
		// Some plugins fail when the netns vanished; retry without a netns so IPAM still releases.
		return m.plugin.Remove(ctx, id, "", opts...)
	}
	return err
}

// Package cni owns the pod network plugin: it loads the CNI configuration
// through go-cni, reloads it when the configuration directory changes, and
// attaches/detaches pod network namespaces.
package cni

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	gocni "github.com/containerd/go-cni"
	"github.com/fsnotify/fsnotify"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"k8s.io/klog/v2"
)

// minWatchedResync is the shortest safety-net resync period while the
// configuration directory is watched with fsnotify.
const minWatchedResync = time.Minute

// Manager wraps go-cni with hot reload of the config directory.
//
// Every load builds a new go-cni instance and publishes it by swapping a
// pointer; ADD, DEL and Status each take the instance current when they
// start (a snapshot) and run on it without holding any lock of the Manager.
// A reload therefore never waits for a slow ADD/DEL, and nothing waits for a
// reload except another reload. (go-cni's own lock is only ever taken for
// writing by Load, which runs before an instance is published.)
type Manager struct {
	confDir string
	binDirs []string
	maxConf int
	// newCNI makes an unloaded go-cni instance; tests replace it.
	newCNI func() (gocni.CNI, error)
	// tracer makes the spans of ADD and DEL (no-op by default).
	tracer trace.Tracer
	// loopbackPlugin runs the loopback CNI plugin (go-cni's lo network)
	// instead of bringing lo up in-process (setLoopbackUp).
	loopbackPlugin bool
	// setLoopbackUp brings lo up in a pod's network namespace.
	setLoopbackUp func(path string) error

	// reloadMu serialises reloads; it is never held by ADD, DEL or Status.
	reloadMu sync.Mutex
	// mu guards cur and is only held to read or swap the pointer.
	mu  sync.RWMutex
	cur *netConfig
}

// netConfig is one loaded configuration. It is immutable once published.
type netConfig struct {
	plugin  gocni.CNI // nil only if go-cni could not be initialised
	loadErr error
	sum     string
	// newCNI and loadOpts make the instances of variants (the chains
	// without plugins a pod does not need, see variants.go).
	newCNI   func() (gocni.CNI, error)
	loadOpts []gocni.Opt
	variants variants
}

// Option configures a Manager.
type Option func(*Manager)

// WithMaxConfNum limits how many config files are loaded (0 = all).
func WithMaxConfNum(n int) Option { return func(m *Manager) { m.maxConf = n } }

// WithTracer makes a span for every ADD (cni.Setup) and DEL (cni.Remove).
func WithTracer(t trace.Tracer) Option { return func(m *Manager) { m.tracer = t } }

// WithLoopbackPlugin runs the loopback CNI plugin for each pod (go-cni's lo
// network), as containerd's built-in CRI does, instead of bringing lo up
// in-process; for namespaces that cannot be entered (tests).
func WithLoopbackPlugin() Option { return func(m *Manager) { m.loopbackPlugin = true } }

// New creates a Manager and loads the current configuration (a missing or
// empty config directory is not an error: the network is reported not ready).
func New(confDir string, binDirs []string, opts ...Option) (*Manager, error) {
	m := &Manager{confDir: confDir, binDirs: binDirs, maxConf: 1, tracer: noop.NewTracerProvider().Tracer(""), setLoopbackUp: setLoopbackUp}
	for _, o := range opts {
		o(m)
	}
	maxConf := max(m.maxConf, 0)
	minNetworks := 1 // the pod's network (eth0)
	if m.loopbackPlugin {
		minNetworks = 2 // and lo
	}
	m.newCNI = func() (gocni.CNI, error) {
		return gocni.New(
			gocni.WithPluginDir(binDirs),
			gocni.WithPluginConfDir(confDir),
			gocni.WithPluginMaxConfNum(maxConf),
			gocni.WithInterfacePrefix("eth"),
			gocni.WithMinNetworkCount(minNetworks),
		)
	}
	if _, err := m.newCNI(); err != nil {
		return nil, fmt.Errorf("initialising CNI: %w", err)
	}
	m.Sync()
	return m, nil
}

// Run keeps the configuration in sync with the config directory until ctx
// is done. The directory is watched with fsnotify (created if missing, as
// containerd does); while it is watched, a full resync every
// max(interval, one minute) is a safety net for lost events. When it cannot
// be watched, the directory is polled every interval instead.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Second
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		klog.ErrorS(err, "Cannot watch the CNI config directory; polling it", "dir", m.confDir, "interval", interval)
		m.poll(ctx, interval)
		return
	}
	defer w.Close()

	watching := m.watch(w)
	m.Sync() // changes made before the watch was in place
	resync := time.NewTicker(m.resyncPeriod(watching, interval))
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				m.poll(ctx, interval)
				return
			}
			if filepath.Clean(ev.Name) == filepath.Clean(m.confDir) && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				// The directory itself went away: the watch is gone with it.
				_ = w.Remove(m.confDir)
				watching = false
				resync.Reset(m.resyncPeriod(watching, interval))
			}
			klog.V(4).InfoS("CNI config directory changed", "event", ev.String())
			m.Sync()
		case err, ok := <-w.Errors:
			if !ok {
				m.poll(ctx, interval)
				return
			}
			klog.ErrorS(err, "Watching the CNI config directory", "dir", m.confDir)
			m.Sync()
		case <-resync.C:
			if !watching {
				if watching = m.watch(w); watching {
					resync.Reset(m.resyncPeriod(watching, interval))
				}
			}
			m.Sync()
		}
	}
}

func (m *Manager) resyncPeriod(watching bool, interval time.Duration) time.Duration {
	if watching {
		return max(interval, minWatchedResync)
	}
	return interval
}

// watch adds the config directory to w, creating it if needed.
func (m *Manager) watch(w *fsnotify.Watcher) bool {
	if err := os.MkdirAll(m.confDir, 0o755); err != nil {
		klog.ErrorS(err, "Creating the CNI config directory to watch it; polling it", "dir", m.confDir)
		return false
	}
	if err := w.Add(m.confDir); err != nil {
		klog.ErrorS(err, "Watching the CNI config directory; polling it", "dir", m.confDir)
		return false
	}
	return true
}

func (m *Manager) poll(ctx context.Context, interval time.Duration) {
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

// dirSum fingerprints the config files (names, sizes, content).
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

// Sync reloads the configuration if the directory changed since the last
// load. The new configuration is loaded into a fresh go-cni instance and
// then published; ADD/DEL calls in flight finish on the one they started with.
func (m *Manager) Sync() {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	sum := m.dirSum()
	if cur := m.current(); cur != nil && cur.sum == sum {
		return
	}
	next := &netConfig{sum: sum, newCNI: m.newCNI}
	if m.loopbackPlugin {
		next.loadOpts = []gocni.Opt{gocni.WithLoNetwork}
	}
	p, err := m.newCNI()
	if err == nil {
		next.plugin = p
		err = p.Load(append(next.loadOpts, gocni.WithDefaultConf)...)
		if err == nil {
			err = p.Status()
		}
	}
	if err != nil {
		klog.InfoS("CNI configuration not loaded", "dir", m.confDir, "err", err)
	} else {
		klog.InfoS("CNI configuration loaded", "dir", m.confDir)
	}
	next.loadErr = err
	m.mu.Lock()
	m.cur = next
	m.mu.Unlock()
}

// current returns the published configuration (a snapshot).
func (m *Manager) current() *netConfig {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cur
}

// errNoConfig is returned before any configuration was published.
var errNoConfig = errors.New("no CNI configuration loaded")

// ErrNetworkNotReady is returned by Setup when no usable configuration is
// loaded: no plugin ran, so nothing needs to be torn down.
var ErrNetworkNotReady = errors.New("network not ready")

// status tells whether the snapshot c is usable.
func (c *netConfig) status() error {
	switch {
	case c == nil:
		return errNoConfig
	case c.loadErr != nil:
		return c.loadErr
	case c.plugin == nil:
		return errNoConfig
	}
	return c.plugin.Status()
}

// Status returns nil when a usable network configuration is loaded.
func (m *Manager) Status() error {
	return m.current().status()
}

// Config returns the loaded configuration (for verbose Status).
func (m *Manager) Config() *gocni.ConfigResult {
	c := m.current()
	if c == nil || c.plugin == nil {
		return nil
	}
	return c.plugin.GetConfig()
}

// Setup attaches the network namespace at path to the pod network, with
// the pod's CNI arguments. Plugins the pod does not need are not run (see
// variants.go), and lo is brought up in-process while the chain runs
// (unless WithLoopbackPlugin).
func (m *Manager) Setup(ctx context.Context, id, path string, args PodArgs) (_ *gocni.Result, retErr error) {
	ctx, span := m.tracer.Start(ctx, "cni.Setup", trace.WithAttributes(attribute.String("sandbox.id", id)))
	defer func() { endSpan(span, retErr) }()
	c := m.current()
	if err := c.status(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNetworkNotReady, err)
	}
	p, err := c.variant(skipFor(args, true))
	if err != nil {
		return nil, err
	}
	loErr := make(chan error, 1)
	if m.loopbackPlugin || path == "" {
		loErr <- nil
	} else {
		go func() { loErr <- m.setLoopbackUp(path) }()
	}
	res, err := p.Setup(ctx, id, path, args.Opts()...)
	if lerr := <-loErr; err == nil && lerr != nil {
		// The chain ran: the caller's rollback tears it down.
		return nil, lerr
	}
	return res, err
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Remove detaches the pod from the network (see Setup; the plugins left
// out of a DEL are those whose DEL does nothing for the arguments); the
// arguments must be those of Setup (see TeardownPod). The namespace may
// already be gone.
func (m *Manager) Remove(ctx context.Context, id, path string, args PodArgs) (retErr error) {
	ctx, span := m.tracer.Start(ctx, "cni.Remove", trace.WithAttributes(attribute.String("sandbox.id", id)))
	defer func() { endSpan(span, retErr) }()
	c := m.current()
	if c == nil || c.plugin == nil {
		return errNoConfig
	}
	p, err := c.variant(skipFor(args, false))
	if err != nil {
		return err
	}
	opts := args.Opts()
	if args.LoopbackPlugin && !m.loopbackPlugin {
		// Set up by the loopback plugin: its DEL drops its cached result.
		lo, err := c.loopbackOnly()
		if err == nil {
			err = lo.Remove(ctx, id, path, opts...)
		}
		if err != nil {
			klog.FromContext(ctx).Info("CNI DEL of the loopback network failed", "podSandboxID", id, "err", err)
		}
	}
	err = p.Remove(ctx, id, path, opts...)
	if err != nil && strings.Contains(err.Error(), "no such file or directory") && path != "" {
		// Some plugins fail when the netns vanished; retry without a netns so IPAM still releases.
		return p.Remove(ctx, id, "", opts...)
	}
	return err
}

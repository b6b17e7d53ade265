// Package config holds cri-containerd's configuration: defaults, the TOML file
// and command-line flags, with precedence flag > file > default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DefaultConfigPath is where the daemon looks for its TOML file when --config is not given.
const DefaultConfigPath = "/etc/cri-containerd/config.toml"

// Runtime describes one runtime handler (CRI RuntimeHandler) backed by a containerd shim.
type Runtime struct {
	// Type is the containerd runtime (shim) name, e.g. io.containerd.runc.v2.
	Type string `toml:"runtime_type" json:"runtimeType"`
	// BinaryName is the OCI runtime binary the runc shim execs (default runc).
	BinaryName string `toml:"binary_name" json:"binaryName,omitempty"`
	// Root is the OCI runtime state root (runc --root).
	Root string `toml:"root" json:"root,omitempty"`
	// SystemdCgroup selects the systemd cgroup driver for this runtime.
	SystemdCgroup bool `toml:"systemd_cgroup" json:"systemdCgroup"`
	// Snapshotter overrides the default snapshotter for this handler.
	Snapshotter string `toml:"snapshotter" json:"snapshotter,omitempty"`
}

// Config is the whole daemon configuration. The TOML keys are the contract for
// config files; the flag names are the contract for the command line.
type Config struct {
	SocketPath          string `toml:"socket_path" json:"socketPath"`
	ContainerdEndpoint  string `toml:"containerd_endpoint" json:"containerdEndpoint"`
	ContainerdNamespace string `toml:"containerd_namespace" json:"containerdNamespace"`
	RootDir             string `toml:"root_dir" json:"rootDir"`
	StateDir            string `toml:"state_dir" json:"stateDir"`
	Snapshotter         string `toml:"snapshotter" json:"snapshotter"`
	RegistryConfigPath  string `toml:"registry_config_path" json:"registryConfigPath"`
	SandboxImage        string `toml:"sandbox_image" json:"sandboxImage"`
	NetworkBinDir       string `toml:"network_bin_dir" json:"networkBinDir"`
	NetworkConfDir      string `toml:"network_conf_dir" json:"networkConfDir"`
	// NetworkMaxConfNum is how many CNI config files are loaded (0 = all).
	NetworkMaxConfNum int    `toml:"network_max_conf_num" json:"networkMaxConfNum"`
	StreamAddr        string `toml:"stream_addr" json:"streamAddr"`
	StreamPort        string `toml:"stream_port" json:"streamPort"`
	// StreamIdleTimeout closes idle exec/attach/port-forward streams.
	StreamIdleTimeout Duration `toml:"stream_idle_timeout" json:"streamIdleTimeout"`
	MetricsAddr       string   `toml:"metrics_addr" json:"metricsAddr"`
	// PprofAddr serves /debug/pprof on its own listener (a TCP address or
	// unix:///path); empty disables it. It is never on the metrics listener.
	PprofAddr string `toml:"pprof_addr" json:"pprofAddr"`
	// SocketGroup is the group (name or numeric gid) owning the CRI socket,
	// which is created with mode 0660; empty keeps the daemon's group.
	SocketGroup string `toml:"socket_group" json:"socketGroup"`
	// EnableTLSStreaming serves exec/attach/port-forward over TLS: with
	// StreamTLSCert/StreamTLSKey when set, else a self-signed pair made at start.
	EnableTLSStreaming bool   `toml:"enable_tls_streaming" json:"enableTLSStreaming"`
	StreamTLSCert      string `toml:"stream_tls_cert" json:"streamTLSCert,omitempty"`
	StreamTLSKey       string `toml:"stream_tls_key" json:"streamTLSKey,omitempty"`
	// ShutdownTimeout bounds a graceful stop (SIGTERM/SIGINT): in-flight RPCs
	// and event streams are ended when it expires.
	ShutdownTimeout Duration `toml:"shutdown_timeout" json:"shutdownTimeout"`
	// RecoveryTimeout bounds the recovery of one sandbox or container at start
	// (a hung shim does not block the daemon); RecoveryConcurrency bounds how
	// many objects are recovered at once.
	RecoveryTimeout     Duration `toml:"recovery_timeout" json:"recoveryTimeout"`
	RecoveryConcurrency int      `toml:"recovery_concurrency" json:"recoveryConcurrency"`

	// RestrictOOMScoreAdj clamps every container's oom_score_adj to no lower
	// than the daemon's own: "auto" (when the daemon cannot lower its own
	// score, e.g. without CAP_SYS_RESOURCE), "true" or "false".
	RestrictOOMScoreAdj string `toml:"restrict_oom_score_adj" json:"restrictOOMScoreAdj"`

	// ImagePullProgressTimeout cancels a pull that makes no progress for this long (0 disables).
	ImagePullProgressTimeout Duration `toml:"image_pull_progress_timeout" json:"imagePullProgressTimeout"`
	MaxConcurrentDownloads   int      `toml:"max_concurrent_downloads" json:"maxConcurrentDownloads"`

	// MaxContainerLogLineSize splits longer lines into partial CRI log records (-1 = no limit).
	MaxContainerLogLineSize int `toml:"max_container_log_line_size" json:"maxContainerLogLineSize"`
	// ContainerLogMode says who writes container logs: "daemon" (the daemon
	// reads the output FIFOs) or "shim" (a log writer the containerd shim
	// runs, so output never waits for the daemon; containers with stdin
	// keep the daemon's FIFOs). See package shimlog.
	ContainerLogMode string `toml:"container_log_mode" json:"containerLogMode"`
	// DrainExecSyncIOTimeout bounds how long ExecSync waits for output after the process exits.
	DrainExecSyncIOTimeout Duration `toml:"drain_exec_sync_io_timeout" json:"drainExecSyncIOTimeout"`

	// CgroupDriver is "cgroupfs" or "systemd" (reported by RuntimeConfig).
	CgroupDriver string `toml:"cgroup_driver" json:"cgroupDriver"`
	// DefaultRuntimeName is the handler used when RunPodSandbox names none.
	DefaultRuntimeName string             `toml:"default_runtime_name" json:"defaultRuntimeName"`
	Runtimes           map[string]Runtime `toml:"runtimes" json:"runtimes"`

	// ContainerdStartTimeout is how long the daemon waits for containerd at start.
	ContainerdStartTimeout Duration `toml:"containerd_start_timeout" json:"containerdStartTimeout"`
	// StatsCollectPeriod is how often snapshot usage is refreshed for ImageFsInfo/stats.
	StatsCollectPeriod Duration `toml:"stats_collect_period" json:"statsCollectPeriod"`
	// StatsSamplePeriod is how often the cgroups and network counters of
	// running containers and ready pods are read; the stats RPCs and
	// ListPodSandboxMetrics answer from these readings when younger than
	// 1.5 periods (else read on demand). 0 reads on every call.
	StatsSamplePeriod Duration `toml:"stats_sample_period" json:"statsSamplePeriod"`
	// EnableCDI resolves CDI devices (CDI_devices, cdi.k8s.io/*
	// annotations) against the spec files in CDISpecDirs.
	EnableCDI   bool     `toml:"enable_cdi" json:"enableCDI"`
	CDISpecDirs []string `toml:"cdi_spec_dirs" json:"cdiSpecDirs"`
	// TracingEndpoint is an OTLP/gRPC trace receiver ("host:port",
	// "http://host:port" or "https://host:port"); empty disables tracing.
	TracingEndpoint string `toml:"tracing_endpoint" json:"tracingEndpoint"`
	// TracingSamplingRatio of new traces (0..1).
	TracingSamplingRatio float64 `toml:"tracing_sampling_ratio" json:"tracingSamplingRatio"`
	// TracingServiceName is the service.name of the spans.
	TracingServiceName string `toml:"tracing_service_name" json:"tracingServiceName"`
	// DisableAppArmor, when true, ignores AppArmor requests instead of failing on hosts without it.
	DisableAppArmor bool `toml:"disable_apparmor" json:"disableAppArmor"`
	// EnableUnprivilegedPorts / ICMP set the matching sysctls in pods with their own netns.
	EnableUnprivilegedPorts bool `toml:"enable_unprivileged_ports" json:"enableUnprivilegedPorts"`
	EnableUnprivilegedICMP  bool `toml:"enable_unprivileged_icmp" json:"enableUnprivilegedICMP"`
	// NRI configures the NRI host (config/nri.go).
	NRI NRI `toml:"nri" json:"nri"`
}

// Duration is a time.Duration that reads and writes as a Go duration string in TOML and JSON.
type Duration struct{ time.Duration }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", string(b), err)
	}
	d.Duration = v
	return nil
}

// Default returns the built-in defaults.
func Default() Config {
	return Config{
		SocketPath:               "/run/cri-containerd/cri-containerd.sock",
		ContainerdEndpoint:       "/run/containerd/containerd.sock",
		ContainerdNamespace:      "k8s.io",
		RootDir:                  "/var/lib/cri-containerd",
		StateDir:                 "/run/cri-containerd",
		Snapshotter:              "overlayfs",
		RegistryConfigPath:       "/etc/containerd/certs.d",
		SandboxImage:             "registry.k8s.io/pause:3.10",
		NetworkBinDir:            "/opt/cni/bin",
		NetworkConfDir:           "/etc/cni/net.d",
		NetworkMaxConfNum:        1,
		StreamAddr:               "127.0.0.1",
		StreamPort:               "10010",
		StreamIdleTimeout:        Duration{4 * time.Hour},
		MetricsAddr:              "127.0.0.1:10011",
		ShutdownTimeout:          Duration{10 * time.Second},
		RecoveryTimeout:          Duration{30 * time.Second},
		RecoveryConcurrency:      8,
		RestrictOOMScoreAdj:      "auto",
		ImagePullProgressTimeout: Duration{5 * time.Minute},
		MaxConcurrentDownloads:   3,
		MaxContainerLogLineSize:  16 * 1024,
		ContainerLogMode:         ContainerLogModeShim,
		DrainExecSyncIOTimeout:   Duration{time.Second},
		CgroupDriver:             "cgroupfs",
		DefaultRuntimeName:       "runc",
		Runtimes: map[string]Runtime{
			"runc": {Type: "io.containerd.runc.v2"},
		},
		ContainerdStartTimeout: Duration{2 * time.Minute},
		StatsCollectPeriod:     Duration{10 * time.Second},
		StatsSamplePeriod:      Duration{10 * time.Second},
		TracingSamplingRatio:   1,
		EnableCDI:              true,
		CDISpecDirs:            []string{"/etc/cdi", "/var/run/cdi"},
		TracingServiceName:     "cri-containerd",
		NRI:                    DefaultNRI(),
	}
}

// LoadFile decodes a TOML file over cfg. Unknown keys are an error naming the key.
// A missing file is an error unless allowMissing is set.
func LoadFile(path string, cfg *Config, allowMissing bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && allowMissing {
			return nil
		}
		return fmt.Errorf("reading config file: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			var keys []string
			for _, e := range sme.Errors {
				row, _ := e.Position()
				keys = append(keys, fmt.Sprintf("%q (line %d)", strings.Join(e.Key(), "."), row))
			}
			return fmt.Errorf("config file %s: unknown key %s", path, strings.Join(keys, ", "))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("config file %s: line %d column %d: %s", path, row, col, strings.ReplaceAll(de.Error(), "\n", " "))
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// Encode renders cfg as TOML.
func Encode(cfg Config) ([]byte, error) {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(true)
	if err := enc.Encode(cfg); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Container log modes (Config.ContainerLogMode).
const (
	ContainerLogModeDaemon = "daemon"
	ContainerLogModeShim   = "shim"
)

// Validate checks values that can be checked without touching the system.

func (c *Config) Validate() error {
	var errs []error
	req := map[string]string{
		"socket_path": c.SocketPath, "containerd_endpoint": c.ContainerdEndpoint,
		"containerd_namespace": c.ContainerdNamespace, "root_dir": c.RootDir, "state_dir": c.StateDir,
		"snapshotter": c.Snapshotter, "sandbox_image": c.SandboxImage,
	}
	for _, k := range []string{"socket_path", "containerd_endpoint", "containerd_namespace", "root_dir", "state_dir", "snapshotter", "sandbox_image"} {
		if req[k] == "" {
			errs = append(errs, fmt.Errorf("%s must not be empty", k))
		}
	}
	switch c.RestrictOOMScoreAdj {
	case "auto", "true", "false":
	default:
		errs = append(errs, fmt.Errorf("restrict_oom_score_adj must be auto, true or false, got %q", c.RestrictOOMScoreAdj))
	}
	switch c.ContainerLogMode {
	case ContainerLogModeDaemon, ContainerLogModeShim:
	default:
		errs = append(errs, fmt.Errorf("container_log_mode must be %s or %s, got %q", ContainerLogModeDaemon, ContainerLogModeShim, c.ContainerLogMode))
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		errs = append(errs, fmt.Errorf("cgroup_driver must be cgroupfs or systemd, got %q", c.CgroupDriver))
	}
	if _, ok := c.Runtimes[c.DefaultRuntimeName]; !ok {
		errs = append(errs, fmt.Errorf("default_runtime_name %q is not in [runtimes]", c.DefaultRuntimeName))
	}
	for name, r := range c.Runtimes {
		if r.Type == "" {
			errs = append(errs, fmt.Errorf("runtimes.%s.runtime_type must not be empty", name))
		}
	}
	if c.RecoveryConcurrency < 1 {
		errs = append(errs, fmt.Errorf("recovery_concurrency must be at least 1"))
	}
	if c.ShutdownTimeout.Duration < 0 || c.RecoveryTimeout.Duration <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout must not be negative and recovery_timeout must be positive"))
	}
	if (c.StreamTLSCert == "") != (c.StreamTLSKey == "") {
		errs = append(errs, fmt.Errorf("stream_tls_cert and stream_tls_key must be set together"))
	}
	if c.TracingSamplingRatio < 0 || c.TracingSamplingRatio > 1 {
		errs = append(errs, fmt.Errorf("tracing_sampling_ratio must be within 0..1"))
	}
	if c.StatsSamplePeriod.Duration < 0 {
		errs = append(errs, fmt.Errorf("stats_sample_period must not be negative"))
	}
	if c.MaxConcurrentDownloads < 1 {
		errs = append(errs, fmt.Errorf("max_concurrent_downloads must be at least 1"))
	}
	errs = append(errs, c.NRI.Validate())
	return errors.Join(errs...)
}
